"""The config-key table of an experiment's page (docs/experiments/NAME.md), generated from its
config file: every key of experiments/NAME.py's get_config(), its default (Python's repr), and
the comment that explains it (the comment on the line that sets it, else the comment lines just
above it; in the variant's own file first, then in the files it builds on).

  python -m tests.config_reference NAME     prints the table to paste under '## Config keys'
  python -m tests.config_reference --write  rewrites the table of every page in place

tests/test_docs.py checks every page's table against this, so the reference cannot drift from
the code: change a default or a comment, and the test names the page to regenerate.
"""

import os
import re
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, 'experiments')
PAGES = os.path.join(ROOT, 'docs', 'experiments')
HEADING = '## Config keys'
_ASSIGN = re.compile(r'^\s*config\.(\w+)\s*=\s*(.*?)\s*(?:#\s?(.*))?$')


def names() -> list:
  """The config files' names, sorted: one page each."""
  return sorted(f[:-3] for f in os.listdir(EXPERIMENTS) if f.endswith('.py'))


def _comments(name: str) -> dict:
  """{key: comment} from experiments/NAME.py: the line's own comment, else the comment block
  just above it."""
  out, block = {}, []
  with open(os.path.join(EXPERIMENTS, f'{name}.py')) as f:
    for line in f:
      stripped = line.strip()
      if stripped.startswith('#'):
        block.append(stripped.lstrip('#').strip())
        continue
      match = _ASSIGN.match(line)
      if match:
        key, _, comment = match.groups()
        text = comment or ' '.join(block)
        if text:
          out.setdefault(key, text)
      block = []
  return out


def _parents(name: str) -> list:
  """The config files NAME builds on (`from experiments import X`), nearest first."""
  with open(os.path.join(EXPERIMENTS, f'{name}.py')) as f:
    found = re.findall(r'^from experiments import (\w+)', f.read(), re.MULTILINE)
  chain = []
  for parent in found:
    chain += [parent] + _parents(parent)
  return chain


def table(name: str) -> str:
  """The markdown table of NAME's keys: key, default, meaning."""
  config = runpy.run_path(os.path.join(EXPERIMENTS, f'{name}.py'))['get_config']()
  sources = [_comments(n) for n in [name] + _parents(name)]
  rows = ['| key | default | meaning |', '|---|---|---|']
  for key in sorted(config.keys()):
    comment = next((c[key] for c in sources if key in c), '')
    value = repr(config[key]).replace('|', '\\|')
    meaning = comment.replace('|', '\\|')
    rows.append(f'| `{key}` | `{value}` | {meaning} |')
  return '\n'.join(rows)


def page_table(text: str):
  """The table under '## Config keys' in a page's text, or None."""
  if HEADING not in text:
    return None
  rest = text.split(HEADING, 1)[1].lstrip('\n')
  lines = []
  for line in rest.splitlines():
    if not line.startswith('|'):
      break
    lines.append(line)
  return '\n'.join(lines)


def write_all() -> list:
  """Rewrites the table of every page that has one; the pages changed."""
  changed = []
  for name in names():
    path = os.path.join(PAGES, f'{name}.md')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      text = f.read()
    old = page_table(text)
    if old is None or old == table(name):
      continue
    with open(path, 'w') as f:
      f.write(text.replace(old, table(name), 1))
    changed.append(path)
  return changed


if __name__ == '__main__':
  if sys.argv[1:] == ['--write']:
    print('\n'.join(write_all()) or 'every table is current')
  elif len(sys.argv) == 2 and sys.argv[1] in names():
    print(table(sys.argv[1]))
  else:
    sys.exit(f'usage: python -m tests.config_reference NAME | --write; NAME one of: '
             f'{", ".join(names())}')
