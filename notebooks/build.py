"""notebooks/NAME.ipynb from notebooks/NAME.py (jupytext's percent format: a cell starts at a
'# %%' line, a markdown cell at '# %% [markdown]', its lines commented '# '), without jupytext:

  python notebooks/build.py            rewrites every notebook from its script
  python notebooks/build.py --check    exits 1 where a notebook differs from its script

The script is the source; tests/test_notebook.py checks the two agree and runs the script.
"""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cells(source: str) -> list:
  """[(kind, text)] of a percent-format script: kind 'markdown' or 'code'."""
  out = []
  for line in source.splitlines():
    if line.startswith('# %%'):
      out.append(['markdown' if '[markdown]' in line else 'code', []])
    elif out:
      out[-1][1].append(line)
  result = []
  for kind, lines in out:
    if kind == 'markdown':
      lines = [line[2:] if line.startswith('# ') else line.lstrip('#') for line in lines]
    while lines and not lines[-1].strip():
      lines.pop()
    while lines and not lines[0].strip():
      lines.pop(0)
    result.append((kind, '\n'.join(lines)))
  return result


def notebook(source: str) -> dict:
  """The .ipynb (nbformat 4) of a percent-format script, outputs empty."""
  def cell(kind, text):
    lines = [line + '\n' for line in text.split('\n')]
    lines[-1] = lines[-1].rstrip('\n')
    base = {'cell_type': kind, 'metadata': {}, 'source': lines}
    return {**base, 'execution_count': None, 'outputs': []} if kind == 'code' else base
  return {'cells': [cell(kind, text) for kind, text in cells(source)],
          'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python',
                                      'name': 'python3'},
                       'language_info': {'name': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}


def render(source: str) -> str:
  return json.dumps(notebook(source), indent=1, ensure_ascii=False) + '\n'


def main(argv) -> int:
  stale = []
  for script in sorted(glob.glob(os.path.join(HERE, '*.py'))):
    if os.path.basename(script) == 'build.py':
      continue
    with open(script) as f:
      text = render(f.read())
    path = script[:-3] + '.ipynb'
    current = open(path).read() if os.path.exists(path) else None
    if current != text:
      stale.append(path)
      if '--check' not in argv:
        with open(path, 'w') as f:
          f.write(text)
  if '--check' in argv and stale:
    print('stale: ' + ', '.join(stale) + '; rebuild with: python notebooks/build.py')
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
