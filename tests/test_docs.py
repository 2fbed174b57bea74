"""The docs hold: every relative link and image in README.md and docs/ resolves to a file in the
repository, every experiment has its page one click from the README, and every page's table of
config keys is the one its config file gives (tests/config_reference.py)."""

import glob
import os
import re

import pytest

from tests import config_reference
from tests.conftest import ROOT

_LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
README = os.path.join(ROOT, 'README.md')


def markdown_files() -> list:
  return [README] + sorted(glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True))


def relative_links(path: str) -> list:
  """The relative targets of the file's markdown links and images (no URL, no bare anchor),
  without their #fragment; fenced code blocks skipped."""
  with open(path) as f:
    text = re.sub(r'```.*?```', '', f.read(), flags=re.DOTALL)
  targets = []
  for target in _LINK.findall(text):
    if re.match(r'^[a-z]+:', target) or target.startswith('#'):
      continue
    targets.append(target.split('#', 1)[0])
  return targets


def test_the_link_check_sees_links_images_and_skips_urls_and_code(tmp_path):
  page = tmp_path / 'page.md'
  page.write_text('[a](x.md) ![b](img/y.png "t") [c](https://e.org) [d](#top) [e](z.md#part)\n'
                  '```\n[f](in_code.md)\n```\n')
  assert relative_links(str(page)) == ['x.md', 'img/y.png', 'z.md']


@pytest.mark.parametrize('path', markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
  base = os.path.dirname(path)
  missing = [t for t in relative_links(path)
             if not os.path.exists(os.path.normpath(os.path.join(base, t)))]
  assert not missing, f'{os.path.relpath(path, ROOT)} links to missing files: {missing}'


def test_every_experiment_has_a_page_one_click_from_the_readme():
  linked = {os.path.normpath(os.path.join(ROOT, t)) for t in relative_links(README)}
  for name in config_reference.names():
    page = os.path.join(ROOT, 'docs', 'experiments', f'{name}.md')
    assert os.path.exists(page), f'experiments/{name}.py has no page docs/experiments/{name}.md'
    assert page in linked, f'README.md does not link docs/experiments/{name}.md'


@pytest.mark.parametrize('name', config_reference.names())
def test_every_page_lists_every_config_key_with_its_default(name):
  path = os.path.join(ROOT, 'docs', 'experiments', f'{name}.md')
  with open(path) as f:
    found = config_reference.page_table(f.read())
  assert found is not None, f'{path} has no "{config_reference.HEADING}" table'
  assert found == config_reference.table(name), (
      f'docs/experiments/{name}.md: its config keys differ from experiments/{name}.py; '
      'rewrite them with: python -m tests.config_reference --write')


def test_the_config_table_sees_a_changed_default_and_comment(tmp_path, monkeypatch):
  """The check itself: a default or a comment changed in the config file changes the table."""
  source = os.path.join(ROOT, 'experiments', 'gradient_decay.py')
  with open(source) as f:
    text = f.read()
  folder = tmp_path / 'experiments'
  folder.mkdir()
  (folder / 'gradient_decay.py').write_text(
      text.replace('config.hidden_size = 256  # N', 'config.hidden_size = 128  # M'))
  before = config_reference.table('gradient_decay')
  monkeypatch.setattr(config_reference, 'EXPERIMENTS', str(folder))
  after = config_reference.table('gradient_decay')
  assert '| `hidden_size` | `256` | N (wide' in before
  assert '| `hidden_size` | `128` | M (wide' in after


def test_the_readme_is_a_front_page():
  """At most 250 lines: the details live in docs/."""
  with open(README) as f:
    assert len(f.readlines()) <= 250
