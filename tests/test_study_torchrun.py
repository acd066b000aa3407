"""A study under torchrun (`python -m torch.distributed.run --nproc_per_node 2 -m adamw_course.cli study ...`, gloo on
the CPU): the two processes share the runs, rank 0 alone prints and writes the summary, and the records are those of
one process running every run itself. Under torchrun `--jobs` and the lm/finetune commands are refused in one line."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ARGS = ['study', 'beta2', '--size', 'tiny', '--device', 'cpu']
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'adamw_course.cli']


def run(cmd, out, *extra):
    return subprocess.run([*cmd, *ARGS, '--out', str(out), *extra], env=ENV, capture_output=True, text=True, timeout=300)


def results(out) -> dict:
    "Each run's record without its timing, by file name."
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != 'train_seconds'}
            for p in sorted((Path(out)/'beta2'/'runs').glob('*.json'))}


@pytest.fixture(scope='module')
def both(tmp_path_factory):
    one, two = tmp_path_factory.mktemp('one'), tmp_path_factory.mktemp('two')
    p1 = run([sys.executable, '-m', 'adamw_course.cli'], one)
    assert p1.returncode == 0, p1.stderr[-3000:]
    p2 = run(TORCHRUN, two)
    assert p2.returncode == 0, p2.stdout[-3000:] + p2.stderr[-3000:]
    return one, two, p2


def test_same_records_as_one_process(both):
    one, two, _ = both
    r1, r2 = results(one), results(two)
    assert len(r1) == 4 and r1 == r2


def test_rank_0_alone_prints_and_summarizes(both):
    _, two, p = both
    assert p.stdout.count('beta2 (tiny): 0 of 4 runs already recorded') == 1 and 'shared by 2 processes' in p.stdout
    assert p.stdout.count('Done in') == 1 and p.stdout.count('| setting |') == 1
    assert sorted(x.name for x in (two/'beta2').iterdir()) == ['beta2.png', 'runs', 'study.json', 'summary.json', 'summary.md']


def test_resume_with_another_number_of_processes(both):
    _, two, _ = both
    before = results(two)
    p = run([sys.executable, '-m', 'adamw_course.cli'], two)
    assert p.returncode == 0 and '4 of 4 runs already recorded' in p.stdout and results(two) == before


@pytest.mark.parametrize('extra, args, msg', [
    (['--jobs', '2'], None, 'drop --jobs'),
    ([], ['study', 'lm', '--size', 'tiny', '--device', 'cpu'], 'only the CIFAR-10 studies run'),
])
def test_refusals_under_torchrun(tmp_path, extra, args, msg):
    cmd = [*TORCHRUN, *(args or ARGS), '--out', str(tmp_path), *extra]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and msg in p.stderr, p.stderr[-3000:]
    assert 'adamw_course/' not in p.stderr          # one line from each process, no traceback through the library
