"""Validation of an experiment's ml_collections config into plain, checked Python values.

Each experiment declares a spec: key -> a checker. List-valued keys accept what the command line
gives (`--config.cells=tanh,gru` arrives as the string 'tanh,gru' or the tuple ('tanh,gru',)) and
what Python gives (a tuple or list); a checker turns it into a tuple of checked values or raises a
UserError naming the key, the bad value and the valid choices.
"""

import math
from typing import Any, Callable, Mapping

from lib.runtime.errors import UserError

Checker = Callable[[str, Any], Any]


def _items(key: str, value) -> list:
  """Flattens a list-valued key: splits strings on commas, keeps other scalars as they are."""
  if isinstance(value, (str, int, float)):
    value = (value,)
  if not isinstance(value, (tuple, list)):
    raise UserError(f'config.{key}: expected a comma-separated list, got {value!r}')
  items = []
  for item in value:
    if isinstance(item, str):
      items.extend(part.strip() for part in item.split(',') if part.strip())
    else:
      items.append(item)
  return items


def _dedupe(items: list) -> tuple:
  return tuple(dict.fromkeys(items))


def _as_int(key: str, value, minimum: int, what: str, maximum: float = float('inf')) -> int:
  if isinstance(value, bool):
    value = str(value)
  if isinstance(value, str):
    try:
      value = int(value.strip())
    except ValueError:
      raise UserError(f'config.{key}: {value!r} is not {what}') from None
  if not isinstance(value, int) or not minimum <= value <= maximum:
    raise UserError(f'config.{key}: {value!r} is not {what}')
  return value


def _as_float(key: str, value, minimum: float, what: str) -> float:
  if isinstance(value, bool):
    raise UserError(f'config.{key}: {value!r} is not {what}')
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise UserError(f'config.{key}: {value!r} is not {what}') from None
  if not (math.isfinite(number) and number >= minimum):
    raise UserError(f'config.{key}: {value!r} is not {what}')
  return number


def choice(valid: tuple, what: str) -> Checker:
  def check(key, value):
    if value not in valid:
      raise UserError(f'config.{key}: unknown {what} {value!r}; valid choices: {", ".join(valid)}')
    return value
  return check


def _listed(one: Checker, if_empty: str) -> Checker:
  """A non-empty list of values, each checked by `one`, repeats dropped (a sweep)."""
  def check(key, value):
    items = _dedupe(one(key, item) for item in _items(key, value))
    if not items:
      raise UserError(f'config.{key} is empty: {if_empty}')
    return items
  return check


def choices(valid: tuple, what: str) -> Checker:
  """A non-empty list of names from `valid`."""
  return _listed(choice(valid, what), f'nothing to sweep; valid choices: {", ".join(valid)}')


def parsed(parse: Callable[[str], Any], if_empty: str) -> Checker:
  """A non-empty list of names, each checked by parse(name) (which raises a UserError naming the
  problem), repeats dropped: names with a grammar rather than a list of choices."""
  def one(key, value):
    if not isinstance(value, str):
      raise UserError(f'config.{key}: expected a name, got {value!r}')
    try:
      parse(value)
    except UserError as e:
      raise UserError(f'config.{key}: {e}') from None
    return value
  return _listed(one, if_empty)


def integer(minimum: int, what: str, maximum: float = float('inf')) -> Checker:
  return lambda key, value: _as_int(key, value, minimum, what, maximum)


def integers(minimum: int, what: str) -> Checker:
  """A non-empty list of integers >= minimum."""
  return _listed(integer(minimum, what), 'nothing to sweep')


def optional_integers(minimum: int, what: str) -> Checker:
  """A list of integers >= minimum, possibly empty, sorted, repeats dropped."""
  def check(key, value):
    return tuple(sorted(_dedupe(_as_int(key, item, minimum, what) for item in _items(key, value))))
  return check


def optional_integers_or(word: str, minimum: int, what: str) -> Checker:
  """`word` alone (a choice made later, e.g. 'auto'), or a list as `optional_integers`."""
  listed = optional_integers(minimum, what)
  def check(key, value):
    return word if _items(key, value) == [word] else listed(key, value)
  return check


def shape(what: str) -> Checker:
  """A non-empty list of positive integers, repeats kept (a shape, not a sweep)."""
  def check(key, value):
    items = tuple(_as_int(key, item, 1, what) for item in _items(key, value))
    if not items:
      raise UserError(f'config.{key} is empty: give at least one size')
    return items
  return check


def real(minimum: float = float('-inf'), what: str = 'a number') -> Checker:
  return lambda key, value: _as_float(key, value, minimum, what)


def reals(minimum: float, what: str) -> Checker:
  """A non-empty list of finite numbers >= minimum."""
  return _listed(real(minimum, what), 'nothing to sweep')


def _as_bool(key: str, value) -> bool:
  if isinstance(value, str) and value.strip().lower() in ('true', 'false'):
    return value.strip().lower() == 'true'
  if not isinstance(value, bool):
    raise UserError(f'config.{key}: {value!r} is not True or False')
  return value


def flag() -> Checker:
  return _as_bool


def flags() -> Checker:
  """A non-empty list of True/False values (a sweep over a switch)."""
  return _listed(_as_bool, 'give True, False or both')


def optional_text() -> Checker:
  """A string that may be empty (e.g. a path where empty means the default)."""
  def check(key, value):
    if not isinstance(value, str):
      raise UserError(f'config.{key}: expected a string, got {value!r}')
    return value
  return check


def text() -> Checker:
  def check(key, value):
    if not isinstance(value, str) or not value:
      raise UserError(f'config.{key}: expected a non-empty name, got {value!r}')
    return value
  return check


def validate(config: Mapping, spec: Mapping[str, Checker]) -> dict:
  """The config as a dict of checked plain values, in the spec's key order."""
  unknown = sorted(set(config) - set(spec))
  if unknown:
    raise UserError(
        f'unknown config key {unknown[0]!r}; valid keys: {", ".join(sorted(spec))}')
  missing = [key for key in spec if key not in config]
  if missing:
    raise UserError(f'config is missing key {missing[0]!r}')
  return {key: check(key, config[key]) for key, check in spec.items()}
