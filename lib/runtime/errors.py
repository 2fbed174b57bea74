"""The one error type a user sees as a one-line message instead of a traceback."""


class UserError(ValueError):
  """Bad input: an unknown name, an impossible number, a missing file, an unwritable workdir."""
