"""Lesson 11's language-model pieces beyond the lesson's own tests: the batching covers any text exactly once per
epoch, `run_lm_study` with two worker processes writes the same records as one process, and a study killed with
SIGKILL and run again ends with the same summary as one that was never interrupted."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import torch
from hypothesis import given, settings, strategies as st

from adamw_course.text import LM_SPECS, LM_SIZES, LMLoader, run_lm_study

torch.set_num_threads(1)
N_TINY = len(LM_SPECS) * len(LM_SIZES['tiny']['seeds'])
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


@settings(max_examples=60, deadline=None)
@given(n=st.integers(20, 3000), bs=st.integers(1, 9), bptt=st.integers(1, 80), seed=st.integers(0, 2**31 - 1),
       vary=st.booleans())
def test_every_epoch_covers_the_streams_exactly_once(n, bs, bptt, seed, vary):
    dl = LMLoader(torch.arange(n), bs, bptt, vary=vary, seed=seed)
    for _ in range(2):
        xs, ys = zip(*dl)
        assert torch.equal(torch.cat(xs), dl.data[:-1]) and torch.equal(torch.cat(ys), dl.data[1:])
        assert all(len(x) >= 1 for x in xs)
        assert dl.data.numel() == n - n % bs


def records(out) -> dict:
    "Every run record of the study in `out`, without the timings."
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if not k.endswith('_seconds')}
            for p in sorted((Path(out)/'lm'/'runs').glob('*.json'))}


def untimed(summary: dict) -> dict:
    return dict(summary, settings=[{k: v for k, v in s.items() if k != 'train_seconds'} for s in summary['settings']])


def test_two_processes_write_the_same_records_as_one(tmp_path):
    one = untimed(run_lm_study(tmp_path/'one', 'tiny', jobs=1, log=None))
    two = untimed(run_lm_study(tmp_path/'two', 'tiny', jobs=2, log=None))
    assert len(records(tmp_path/'one')) == N_TINY
    assert records(tmp_path/'one') == records(tmp_path/'two')
    assert one == two
    meta = json.loads((tmp_path/'two'/'lm'/'study.json').read_text())
    assert meta['command'] == f"adamw-course study lm --size tiny --jobs 2 --out {tmp_path/'two'}"


def test_sigkill_then_resume_gives_the_same_summary(tmp_path):
    run = "import sys; from adamw_course.text import run_lm_study; run_lm_study(sys.argv[1], 'tiny')"
    reference = untimed(run_lm_study(tmp_path/'ref', 'tiny', log=None))
    p = subprocess.Popen([sys.executable, '-c', run, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    start = time.time()
    while len(list((tmp_path/'lm'/'runs').glob('*.json'))) < 3:
        assert p.poll() is None and time.time() - start < 120, 'the study ended before it could be killed'
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    done = len(records(tmp_path))
    assert 3 <= done < N_TINY and not (tmp_path/'lm'/'summary.json').exists()
    lines = []
    assert untimed(run_lm_study(tmp_path, 'tiny', log=lines.append)) == reference
    assert f'{done} of {N_TINY} runs already recorded' in lines[0]
    assert records(tmp_path) == records(tmp_path/'ref')
