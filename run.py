"""Runs one experiment: `python run.py --config=experiments/NAME.py --config.KEY=VALUE --workdir=DIR`.

With no flags it runs the gradient-decay sweep (experiments/gradient_decay.py) into
runs/gradient_decay-<timestamp>. This file is intentionally kept short: everything lives in lib/.
"""

import os
import sys

from absl import app
from absl import flags

from lib import experiments
from lib.runtime import cli
from lib.runtime import preemption
from lib.runtime.errors import UserError

_CONFIG = cli.define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'experiments', 'gradient_decay.py'))
_WORKDIR = flags.DEFINE_string('workdir', None, 'output folder (default runs/<experiment>-<time>)')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'replace results of a different config')
_PLOT_ONLY = flags.DEFINE_bool('plot_only', False, 'redraw the plots of --workdir and exit')
_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', None, 'persistent XLA compilation cache, so a rerun loads its '
    f'programs ("" = off; default $JAX_COMPILATION_CACHE_DIR or {cli.DEFAULT_CACHE_DIR})')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'print the grid, the number of points and programs, '
                             'and estimates of time and memory per program; compute nothing')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'log every compile and each group\'s timing')
_SHARD_INDEX = flags.DEFINE_integer('shard_index', 0, 'which part of the grid this run computes')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 1, 'split the grid into this many runs')
_MERGE = flags.DEFINE_list('merge', None, 'workdirs of shards to join into --workdir, then exit')
_POINTS_BATCH = flags.DEFINE_integer(
    'points_batch', 1, 'points vmapped together on each device: 1 is bit-identical at any device '
    'count; larger (e.g. 64) fills a GPU, bit-identical across device counts for that value')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', None, 'devices to split a CPU host into, each computing its own points '
    '(default: one per core; unused on GPU/TPU)')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', cli.DISTRIBUTED, 'jax.distributed: on = auto-detect the cluster (TPU '
    'pod, SLURM, MPI); auto = on when SLURM or mpirun started several tasks; off = one process')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for a multi-process run')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'processes in a multi-process run')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'this process, 0 .. num_processes - 1')


def main(argv):
  del argv  # checked by cli.parse_flags
  try:
    if _PLOT_ONLY.value:
      if not _WORKDIR.value:
        raise UserError('--plot_only needs --workdir')
      if cli.plot_only_conflicts(sys.argv):
        raise UserError('--plot_only redraws what --workdir holds and takes no '
                        f'{" ".join(cli.plot_only_conflicts(sys.argv))}')
      print(experiments.plot_only(_WORKDIR.value))
      return
    if _MERGE.value:
      if not _WORKDIR.value:
        raise UserError('--merge needs --workdir (where the merged results go)')
      print(experiments.merge(_MERGE.value, _WORKDIR.value, overwrite=_OVERWRITE.value))
      return
    cfg = experiments.validate(cli.load_config(_CONFIG))
    cli.configure_jax(_CACHE_DIR.value, _VERBOSE.value, _CPU_DEVICES.value)
    if _DRY_RUN.value:
      print(experiments.dry_run(cfg, shard=(_SHARD_INDEX.value, _NUM_SHARDS.value),
                                points_batch=_POINTS_BATCH.value))
      return
    cli.initialize_distributed(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
    cli.exit_on_interrupt()
    preemption.install()
    print(experiments.run(cfg, _WORKDIR.value, overwrite=_OVERWRITE.value,
                          shard=(_SHARD_INDEX.value, _NUM_SHARDS.value),
                          points_batch=_POINTS_BATCH.value))
  except UserError as e:  # a ResourceError too (exit status 3)
    cli.fail(str(e), e.exit_status)
  except preemption.Preempted:
    print('preempted (SIGTERM): every finished point and the training state are saved; run the '
          'same command to continue', file=sys.stderr)
    sys.exit(preemption.EXIT_STATUS)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
