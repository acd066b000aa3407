"""Write README.md from nbs/index.ipynb, the course home (nbdev's `nbdev-readme` needs Quarto, which cannot be installed offline).

`python tools/readme.py` rewrites README.md; `python tools/readme.py --check` exits 1 if README.md is out of date.
Markdown cells are copied, code cells become fenced blocks followed by their text output, `#| hide` cells are dropped,
and links to lesson notebooks are made relative to the repository root.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"

def _src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def _outputs(cell):
    "Text outputs of a code cell, as they would print"
    res = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream': res.append(''.join(o['text']))
        elif 'data' in o and 'text/plain' in o['data'] and 'image/png' not in o['data']: res.append(''.join(o['data']['text/plain']))
    return ''.join(res).rstrip()

def render(nb_path=ROOT/'nbs'/'index.ipynb'):
    "The README text for the notebook at `nb_path`"
    nb, parts = json.loads(Path(nb_path).read_text()), []
    for cell in nb['cells']:
        src = _src(cell).strip()
        if not src: continue
        if cell['cell_type'] == 'markdown':
            parts.append(re.sub(r'\]\(((?:api/)?\w+\.ipynb)\)', r'](nbs/\1)', src))
        elif cell['cell_type'] == 'code':
            lines = src.splitlines()
            if any(l.strip() in ('#| hide', '#|hide') for l in lines if l.startswith('#|')): continue
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            parts.append(f"```python\n{code}\n```")
            out = _outputs(cell)
            if out: parts.append(f"```\n{out}\n```")
    return HEADER + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    txt, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != txt: sys.exit("README.md is out of date: run `python tools/readme.py`.")
        print("README.md is up to date.")
    else: readme.write_text(txt)
