"""Check the notebooks as readers will see them: every lesson has a title, a subtitle, a Colab badge,
committed outputs, and no error or traceback in its outputs. Exits 1 with a list of problems."""
import json, sys
from pathlib import Path

NBS = Path(__file__).resolve().parent.parent/'nbs'

def _src(c): return ''.join(c['source'])

def problems(path):
    "The problems found in the notebook at `path`"
    nb, res = json.loads(path.read_text()), []
    cells = nb['cells']
    md = [_src(c) for c in cells if c['cell_type'] == 'markdown']
    if not md or not md[0].lstrip().startswith('# '): res.append('the first cell is not an H1 title')
    elif '\n> ' not in '\n' + md[0]: res.append('no `>` subtitle under the title')
    if 'colab.research.google.com/github/' not in ''.join(md): res.append('no Open-in-Colab badge')
    code = [c for c in cells if c['cell_type'] == 'code' and _src(c).strip()]
    outs = [o for c in code for o in c.get('outputs', [])]
    if code and not outs and path.name[:2].isdigit(): res.append('no committed outputs')
    for c in code:
        for o in c.get('outputs', []):
            text = ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
            if o['output_type'] == 'error' or 'Traceback (most recent call last)' in text:
                res.append(f'an error in the outputs of cell {c.get("id")}')
    return res

if __name__ == '__main__':
    bad = {p.name: r for p in sorted(NBS.glob('*.ipynb')) if (r := problems(p))}
    for name, r in bad.items(): print(f'{name}: ' + '; '.join(r))
    if bad: sys.exit(1)
    print(f'{len(list(NBS.glob("*.ipynb")))} notebooks checked: titles, badges, outputs, no errors.')
