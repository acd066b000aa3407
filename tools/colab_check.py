"""Run each lesson as a reader runs it on Colab: from a copy of the single notebook file in an empty folder, top to
bottom, in a Jupyter kernel, against the installed wheel (not the repository).

Two modes:

- reader (the default): every cell runs, hidden ones and those flagged `#| cuda` or `#| slow` included, because Colab's
  "Run all" runs them all; only `#| eval: false` cells are left out. `IN_TEST` and `ADAMW_COURSE_SIZE` are unset, so
  each lesson runs at its default size preset, and CUDA is hidden, so it runs on the CPU. A lesson fails if a cell
  raises or if it takes longer than `--limit-s` seconds: this is what catches a cell that would start a long run when
  a reader presses "Run all".
- `--test-mode`: `IN_TEST` is set and `#| slow`/`#| cuda`/`#| notest` cells are skipped unless named in `--flags`, as
  `nbdev-test` does.

`--size NAME` sets `ADAMW_COURSE_SIZE` for every lesson (e.g. `smoke` on a GPU machine, with `--gpu` to keep CUDA
visible). The offline CIFAR-10 and WikiText-2 copies are passed through `ADAMW_COURSE_CIFAR10` and
`ADAMW_COURSE_WIKITEXT2` when the caller sets them (Colab downloads the official data instead). Exits 1 if any lesson
fails.

    venv/bin/python tools/colab_check.py nbs/01_sgd.ipynb ... [--limit-s 300] [--test-mode [--flags cuda]]
"""
import argparse, os, shutil, sys, tempfile, time
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


def keep_cell(src: str, test_mode: bool, flags: set) -> bool:
    "Does this code cell run? `eval: false` never; in test mode, a slow/cuda/notest cell only if its flag is in `flags`."
    d = _directives(src)
    if d.get('eval', '').lower() == 'false': return False
    return not (test_mode and (set(d) & SKIP) - flags)


def run_notebook(path: Path, test_mode: bool, flags: set, limit_s: float) -> list[str]:
    "Run the notebook at `path` in a fresh Jupyter kernel from an empty folder; return the failures"
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type != 'code' or keep_cell(c.source, test_mode, flags)]
    work = tempfile.mkdtemp()
    start = time.monotonic()
    try:
        NotebookClient(nb, timeout=int(limit_s) + 1, kernel_name='python3', resources={'metadata': {'path': work}}).execute()
    except CellTimeoutError: return [f"a cell ran longer than the {limit_s:.0f} s limit"]
    except CellExecutionError as e: return [f"{e.ename}: {e.evalue}".strip()[:500]]
    finally: shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - start
    return [f"took {took:.0f} s, over the {limit_s:.0f} s limit"] if took > limit_s else []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--test-mode', action='store_true', help='set IN_TEST and skip slow/cuda/notest cells, as nbdev-test')
    p.add_argument('--flags', default='', help='with --test-mode: space-separated flags whose cells should run, e.g. "cuda"')
    p.add_argument('--size', default=None, help='ADAMW_COURSE_SIZE for every lesson (default: unset, each lesson\'s own default)')
    p.add_argument('--gpu', action='store_true', help='keep CUDA visible (default: hidden, the lessons run on the CPU)')
    p.add_argument('--limit-s', type=float, default=300, help='longest a lesson may take, in seconds (default: 300)')
    p.add_argument('--allow-repo', action='store_true', help='accept adamw_course imported from a checkout, not a wheel')
    a = p.parse_args(argv)
    for k in ('IN_TEST', 'ADAMW_COURSE_SIZE'): os.environ.pop(k, None)
    if a.test_mode: os.environ['IN_TEST'] = '1'
    if a.size: os.environ['ADAMW_COURSE_SIZE'] = a.size
    if not a.gpu: os.environ['CUDA_VISIBLE_DEVICES'] = ''
    os.environ.setdefault('MPLBACKEND', 'Agg')   # no screen: plots render off-screen
    import adamw_course
    if 'site-packages' not in adamw_course.__file__ and not a.allow_repo:
        sys.exit(f"adamw_course comes from {adamw_course.__file__}, not an installed wheel (or pass --allow-repo)")
    mode = 'test mode' if a.test_mode else f"reader mode (size {a.size or 'default'}, {'GPU visible' if a.gpu else 'CPU'})"
    failed, start = {}, time.time()
    for nb in a.notebooks:
        t = time.time()
        f = run_notebook(nb.resolve(), a.test_mode, set(a.flags.split()), a.limit_s)
        print(f"{nb.name}: {'OK' if not f else f[0]} ({time.time() - t:.1f} s)", flush=True)
        if f: failed[nb.name] = f
    print(f"colab check, {mode}: {len(a.notebooks)} notebooks with adamw_course {adamw_course.__version__}, "
          f"{len(failed)} failing, {time.time() - start:.0f} s")
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
