"""The README's Python snippets run as printed (in a fresh process from the repository root; the
workdir the first one names is replaced by a temporary folder)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def python_blocks() -> list:
  with open(os.path.join(ROOT, 'README.md')) as f:
    return re.findall(r'```python\n(.*?)```', f.read(), flags=re.DOTALL)


def test_the_readme_has_its_two_snippets():
  blocks = python_blocks()
  assert len(blocks) == 2 and "'runs/from_python'" in blocks[0]


@pytest.mark.slow
def test_the_readme_snippets_run(tmp_path):
  first, second = python_blocks()
  workdir = str(tmp_path / 'from_python')
  result = subprocess.run(
      [sys.executable, '-c', first.replace("'runs/from_python'", repr(workdir)) + second],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.exists(os.path.join(workdir, 'results.jsonl'))
  rate = float(result.stdout.strip().splitlines()[-1])
  assert -1.0 < rate < 0.0  # tanh at sigma_w2 = 1 with input: vanishing
