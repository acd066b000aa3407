"""The Learner under DDP (lesson 05f), for real: two processes started by `python -m torch.distributed.run
--nproc_per_node 2`, with the gloo backend on the CPU, running tests/ddp/train.py.

The first launch fits with a checkpoint after every epoch and kills both ranks in the middle of epoch 2. The second
runs lr_find, an uninterrupted fit and a fit resumed from that checkpoint. Here, in one process, the same model trains
with the global batch size (2 x 32 = 64) on the same data order, and must reach the same weights and epoch figures to
float tolerance; the DDP checkpoint loads without DDP and continues to the same weights."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

from adamw_course.distributed import ShardedLoader, rank_and_world

sys.path.insert(0, str(Path(__file__).parent/'ddp'))
from train import LR, N_EPOCHS, make_learner   # noqa: E402

SCRIPT = Path(__file__).parent/'ddp'/'train.py'
TOL = dict(rtol=1e-4, atol=1e-5)


def torchrun(mode: str, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(SCRIPT), mode, str(out)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    die = torchrun('die', out)
    assert die.returncode != 0 and (out/'ddp.pt').is_file(), die.stdout[-2000:] + die.stderr[-2000:]
    main = torchrun('main', out)
    assert main.returncode == 0, main.stdout[-2000:] + main.stderr[-3000:]
    return out, [torch.load(out/f'rank{r}.pt', weights_only=True) for r in range(2)], main.stdout


@pytest.fixture(scope='module')
def single():
    "One process, bs 64 = 2 ranks x 32, the same seeds: the run the two ranks must match."
    learn = make_learner(64)
    lf = learn.lr_find(num_it=30, end_lr=1.)
    with learn.no_bar(): learn.fit(N_EPOCHS, LR)
    return learn, lf


def test_ranks_agree(runs):
    _, (r0, r1), _ = runs
    assert r0['world'] == 2
    for k in ('values', 'losses', 'resumed_values', 'resumed_from'): assert r0[k] == r1[k], k
    torch.testing.assert_close(r0['model'], r1['model'], rtol=0, atol=0)
    assert r0['shows_progress'] and not r1['shows_progress']


def test_two_ranks_match_one_process(runs, single):
    _, (r0, _), _ = runs
    learn, _ = single
    torch.testing.assert_close(r0['model'], learn.model.state_dict(), **TOL)
    torch.testing.assert_close(torch.tensor(r0['values']), torch.tensor(learn.recorder.values), **TOL)
    torch.testing.assert_close(torch.tensor(r0['losses']), torch.tensor(learn.recorder.losses), **TOL)


def test_lr_find_lockstep(runs, single):
    _, (r0, r1), _ = runs
    _, lf = single
    assert r0['lr_find'] == r1['lr_find'] and r0['lr_find']['restored'] and r1['lr_find']['restored']
    assert r0['lr_find']['valley'] is not None
    n = min(len(lf.losses), len(r0['lr_find']['losses']))
    torch.testing.assert_close(torch.tensor(r0['lr_find']['losses'][:n]), torch.tensor(lf.losses[:n]), **TOL)


def test_resume_after_kill(runs):
    out, (r0, _), _ = runs
    assert r0['resumed_from'] == 2
    torch.testing.assert_close(r0['resumed_model'], r0['model'], rtol=0, atol=0)   # as if never killed
    assert r0['resumed_values'] == r0['values']


def test_checkpoint_loads_in_one_process(runs):
    out, (r0, _), _ = runs
    assert (out/'saved_by_rank0.pt').is_file() and not (out/'saved_by_rank1.pt').exists()
    ckpt = torch.load(out/'ddp.pt', weights_only=True)
    assert not any(k.startswith('module.') for k in ckpt['model'])
    learn = make_learner(64).load(out/'ddp.pt')
    with learn.no_bar(): learn.fit(N_EPOCHS, LR, start_epoch=learn.epochs_done)
    torch.testing.assert_close(learn.model.state_dict(), r0['model'], **TOL)


def test_sharded_loader_in_one_process():
    "Without a group: the two shards of each batch, side by side, are the batch of the loader with twice the bs."
    assert rank_and_world() == (0, 1)
    parts = [list(ShardedLoader(make_learner(32).dls.train, rank=r, world_size=2)) for r in range(2)]
    whole = list(make_learner(64).dls.train)
    assert len(parts[0]) == len(parts[1]) == len(whole) == 3
    for a, b, w in zip(*parts, whole):
        torch.testing.assert_close(torch.cat([a[0], b[0]]), w[0], rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([a[1], b[1]]), w[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match='rank must be'): ShardedLoader(make_learner(32).dls.train, rank=2, world_size=2)
