"""tools/colab_check.py: which cells a reader's "Run all" executes, and that an error or a lesson over the time limit
fails the check (run on tiny notebooks in a real Jupyter kernel)."""
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import colab_check as cc


@pytest.mark.parametrize('src, reader, test_mode', [
    ('x = 1', True, True),
    ('#| cuda\nx = 1', True, False),          # Colab runs a cuda cell: it must guard itself
    ('#| slow\nx = 1', True, False),
    ('#| hide\nx = 1', True, True),
    ('#| eval: false\nx = 1', False, False),  # shown, never run
])
def test_keep_cell(src, reader, test_mode):
    assert cc.keep_cell(src, test_mode=False, flags=set()) is reader
    assert cc.keep_cell(src, test_mode=True, flags=set()) is test_mode


def test_flags_bring_back_cells_in_test_mode():
    assert cc.keep_cell('#| cuda\nx = 1', test_mode=True, flags={'cuda'})


def _nb(tmp_path, *cells) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    path = tmp_path / 'lesson.ipynb'
    nbformat.write(nb, path)
    return path


def test_reader_mode_runs_cuda_cells_and_reports_errors(tmp_path):
    path = _nb(tmp_path, 'x = 1', '#| cuda\nraise RuntimeError("an unguarded GPU cell")')
    fails = cc.run_notebook(path, test_mode=False, flags=set(), limit_s=60)
    assert len(fails) == 1 and 'an unguarded GPU cell' in fails[0]
    assert cc.run_notebook(path, test_mode=True, flags=set(), limit_s=60) == []   # test mode skips it


def test_time_limit(tmp_path):
    path = _nb(tmp_path, 'import time', 'time.sleep(3)')
    fails = cc.run_notebook(path, test_mode=False, flags=set(), limit_s=1)
    assert len(fails) == 1 and 'limit' in fails[0]
    assert cc.run_notebook(path, test_mode=False, flags=set(), limit_s=30) == []
