"""A study killed at any point and run again ends with the same summary as one that was never interrupted.

The study runs in a child process (`python -m adamw_course.cli`), as a user would run it. The child is killed with
SIGKILL, so nothing in it can clean up: what survives is only what was already on disk. SIGTERM, which a job scheduler
sends, must end the command with a one-line message and exit status 143 (128 + SIGTERM, as shells report it; Ctrl-C gives 130)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

ARGS = ['reproduce', '--epochs', '2', '--n-per-class', '60', '--n-test-per-class', '20', '--runs', '2', '--device', 'cpu']
N_RUNS = 8                                  # 4 optimizers x 2 seeds
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def cli(out, *extra, **kw):
    return subprocess.Popen([sys.executable, '-m', 'adamw_course.cli', *ARGS, '--out', str(out), *extra], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def records(out) -> list[Path]: return sorted((Path(out)/'post_grid'/'runs').glob('*.json'))


def results(out) -> dict:
    "The summary without the timings, which differ from run to run."
    s = json.loads((Path(out)/'post_grid'/'summary.json').read_text())
    for row in s['settings']: row.pop('train_seconds', None)
    return s


def wait_for_records(out, n, proc, timeout=300):
    start = time.time()
    while len(records(out)) < n:
        assert proc.poll() is None, f"the study ended before it could be interrupted: {proc.communicate()}"
        assert time.time() - start < timeout, 'no record appeared in time'
        time.sleep(0.05)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp('uninterrupted')
    p = cli(out); stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert len(records(out)) == N_RUNS
    return results(out)


@pytest.mark.parametrize('kill_after', [1, 5])
def test_sigkill_then_resume_gives_the_same_summary(tmp_path, uninterrupted, kill_after):
    p = cli(tmp_path)
    wait_for_records(tmp_path, kill_after, p)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    done = records(tmp_path)
    assert kill_after <= len(done) < N_RUNS, len(done)
    for r in done: json.loads(r.read_text())                      # every record on disk is complete
    assert not (tmp_path/'post_grid'/'summary.json').exists()     # killed before the summary
    p = cli(tmp_path); stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert f'{len(done)} of {N_RUNS} runs already recorded' in stdout, stdout
    assert results(tmp_path) == uninterrupted


def test_sigterm_says_what_was_saved_and_how_to_resume(tmp_path, uninterrupted):
    p = cli(tmp_path)
    wait_for_records(tmp_path, 2, p)
    p.send_signal(signal.SIGTERM); stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 143, (p.returncode, stderr)
    assert 'Traceback' not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    n = len(records(tmp_path))
    assert last.startswith(f'Interrupted: {n} of 8 finished run(s) are saved in') and 'run the same command again to resume' in last, last
    p = cli(tmp_path); p.communicate(timeout=600)
    assert p.returncode == 0 and results(tmp_path) == uninterrupted
