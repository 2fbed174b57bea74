"""Golden records of the language models: tests/test_golden.py's check, for the runs of
tests/golden/__init__.py's FILES['language'] (a file of their own, so that pytest-xdist's workers
share the runs)."""

import pytest

from tests import golden


@pytest.mark.parametrize('name', golden.runs_of('language'))
def test_records_equal_the_golden_records(name, data_dir, tmp_path):
  """results.jsonl against tests/golden/<name>.jsonl, field by field."""
  golden.check(name, str(tmp_path / 'w'), data_dir)
