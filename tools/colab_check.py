"""Run each lesson as Colab would: in a Python that has the built wheel installed (not the repository), from a copy of
the single notebook file in an empty folder, top to bottom, in a Jupyter kernel of that Python (as Colab runs it).

Cells flagged `#| slow`, `#| cuda` or `#| notest`, or `#| eval: false`, are skipped unless their flag is passed with
`--flags` (as with `nbdev-test --flags cuda` on a GPU machine). `IN_TEST` is set, so the lessons use their small CPU
subsets; the offline CIFAR-10 and WikiText-2 copies are passed through `ADAMW_COURSE_CIFAR10` and `ADAMW_COURSE_WIKITEXT2`
when they exist (Colab downloads the official
one instead). Exits 1 if any cell raises.

    venv/bin/python tools/colab_check.py nbs/01_sgd.ipynb ... [--flags cuda]
"""
import argparse, json, os, shutil, sys, tempfile, time
from pathlib import Path

SKIP = {'slow', 'cuda', 'notest'}


def _directives(src: str) -> dict:
    "The nbdev directives at the top of a cell, e.g. {'cuda': '', 'eval': 'false'}"
    res = {}
    for line in src.splitlines():
        if not line.startswith('#|'): break
        key, _, val = line[2:].strip().partition(':')
        for k in key.split(): res[k.strip()] = val.strip()
    return res


def run_notebook(path: Path, flags: set) -> list[str]:
    "Run the notebook at `path` in a fresh Jupyter kernel from an empty folder; return the failures"
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nb = nbformat.read(path, as_version=4)
    def keep(c):
        d = _directives(c.source) if c.cell_type == 'code' else {}
        return not ((set(d) & SKIP) - flags or d.get('eval', '').lower() == 'false')
    nb.cells = [c for c in nb.cells if keep(c)]
    work = tempfile.mkdtemp()
    try:
        NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': work}}).execute()
    except CellExecutionError as e:
        return [str(e).strip().splitlines()[-1]]
    finally: shutil.rmtree(work, ignore_errors=True)
    return []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--flags', default='', help='space-separated flags whose cells should run, e.g. "cuda"')
    a = p.parse_args(argv)
    os.environ['IN_TEST'] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg')   # no screen: plots render off-screen
    import adamw_course
    if 'site-packages' not in adamw_course.__file__: sys.exit(f"adamw_course comes from {adamw_course.__file__}, not an installed wheel")
    failed, start = {}, time.time()
    for nb in a.notebooks:
        t = time.time()
        f = run_notebook(nb.resolve(), set(a.flags.split()))
        print(f"{nb.name}: {'OK' if not f else f[0]} ({time.time() - t:.1f} s)", flush=True)
        if f: failed[nb.name] = f
    print(f"colab check: {len(a.notebooks)} notebooks with adamw_course {adamw_course.__version__} from the wheel, "
          f"{len(failed)} failing, {time.time() - start:.0f} s")
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
