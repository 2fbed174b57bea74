"""The errors a user sees as one line instead of a traceback, and the exit status of each."""

import contextlib
import errno
import logging as std_logging
import re

from absl import logging


class UserError(ValueError):
  """Bad input: an unknown name, an impossible number, a missing file, an unwritable workdir, a
  run too big for the machine. Nothing was computed or written."""
  exit_status = 2


class ResourceError(UserError):
  """The machine ran out of memory or disk, or refused a write, mid-run: every finished point is
  saved whole, and running the same command again resumes."""
  exit_status = 3


# OS errors of a write that the machine, not the code, is to blame for.
_WRITE_ERRNOS = {errno.ENOSPC: 'no space left on the disk', errno.EDQUOT: 'disk quota exceeded',
                 errno.EROFS: 'the file system is read-only', errno.EACCES: 'permission denied'}


# tensorstore (which writes orbax's checkpoints) reports an OS error in its message, not as one
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")
_FAILED_WRITING = re.compile(r'Failed writing: "([^"]+)"')


def _write_error(error: BaseException):
  """(errno, file or None) of a full disk, a quota, or a read-only or forbidden file system that
  `error` is or was raised from (libraries wrap them), else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
      return error.errno, error.filename
    code = _OS_ERROR_CODE.search(str(error))
    if code and int(code.group(1)) in _WRITE_ERRNOS:
      path = _FAILED_WRITING.search(str(error))
      return int(code.group(1)), path.group(1) if path else None
    seen.add(id(error))
    # what it was raised from, or during (unless `raise ... from None` said that was not why)
    error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
  return None


def resource_error(error: BaseException, workdir: str):
  """The ResourceError of `error` if the machine ran out (of memory: XLA's RESOURCE_EXHAUSTED or
  Python's MemoryError; of disk, or a write was refused), naming the resource and the workdir;
  None for any other error."""
  written = _write_error(error)
  if written is not None:
    code, path = written
    where = (f' {"on" if code == errno.EACCES else "writing"} {path}' if path else '')
    return ResourceError(
        f'{_WRITE_ERRNOS[code]}{where} (workdir {workdir}); every record written so far is '
        'whole: free space (or fix the permission) and run the same command again, it resumes')
  text = str(error)
  if isinstance(error, MemoryError) or (type(error).__name__ == 'JaxRuntimeError'
                                        and 'RESOURCE_EXHAUSTED' in text):
    first = next((line.strip() for line in text.splitlines() if line.strip()), 'MemoryError')
    return ResourceError(
        f'out of memory mid-run ({first[:200]}); every finished point is saved in {workdir}: '
        'free memory and run the same command again, it resumes (a smaller config needs a new '
        'workdir)')
  return None


@contextlib.contextmanager
def resources(workdir: str):
  """Turns running out of memory or disk inside the block into a one-line ResourceError."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless the machine ran out)
    error = resource_error(e, workdir)
    if error is None:
      raise
    logging.info('%s, from:', error, exc_info=True)  # --verbose: where it ran out
    raise error from None


@contextlib.contextmanager
def absl_quiet(level: int = std_logging.CRITICAL):
  """absl's logger (which TFDS and orbax log through) at `level` inside, so that a failure the
  user sees as one line is not followed by their warnings; its own level given back after
  (absl's set_verbosity(get_verbosity()) would pin an unset level to WARNING, hiding INFO from
  every later log capture in the process)."""
  logger = std_logging.getLogger('absl')
  before = logger.level
  logger.setLevel(level)
  try:
    yield
  finally:
    logger.setLevel(before)
