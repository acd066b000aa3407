"""Parity of `adamw_course.lr_finder.lr_find` with torch-lr-finder's `LRFinder.range_test` (PyPI `torch-lr-finder`,
in the dev extra).

torch-lr-finder smooths with `smooth_f * loss + (1 - smooth_f) * previous`, starting from the first loss, and stops
when that passes `diverge_th` x its best, keeping the point that passed. With our smoothing set to match it
(`beta = 1 - smooth_f = 0.95`, `bias_correction=False`, `diverge_th=5`), the same model, data, seed and settings must
give the same curve:

- the learning rates are equal exactly (same float formula), and so is the number of points (same stop);
- the raw losses are equal bit for bit: applying torch-lr-finder's recurrence to our `raw_losses` reproduces its
  history exactly, which shows both ran the very same training steps (dropout masks and shuffles included);
- our smoothed curve equals its curve to 1e-12 relative: the only difference is that we weigh the new loss by
  `1 - beta`, and in floating point `1 - 0.95` is `0.05000000000000004`, not `0.05`.
"""
import contextlib, io, math

import pytest
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.testing import assert_close

torch_lr_finder = pytest.importorskip('torch_lr_finder')
from adamw_course.adamw import AdamW
from adamw_course.lr_finder import lr_find

SMOOTH_F, DIVERGE_TH = 0.05, 5

pytestmark = pytest.mark.usefixtures('one_thread')      # tests/conftest.py

OPTIMIZERS = {
    'sgd_momentum': lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    'adam': lambda ps: torch.optim.Adam(ps, lr=1e-3),
    'adamw_two_groups': lambda ps: torch.optim.AdamW([{'params': ps[:2]}, {'params': ps[2:], 'weight_decay': 0}], lr=1e-3),
    'our_adamw': lambda ps: AdamW(ps, lr=1e-3, weight_decay=0.1),
}

def make(seed: int, opt_name: str, device='cpu', random_free=False):
    """A model with BatchNorm and dropout (so the RNG and buffers matter), an optimizer, and a shuffling DataLoader.
    `random_free`: no dropout and no shuffle, so that nothing depends on when a finder draws from the global RNG
    (creating a DataLoader iterator draws a seed, and torch-lr-finder creates its validation iterator at other moments
    than we do)."""
    torch.manual_seed(seed)
    x = torch.randn(384, 20)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    dl = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=not random_free)   # 12 batches: long sweeps cycle through it
    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), *([] if random_free else [nn.Dropout(0.1)]),
                          nn.Linear(64, 3)).to(device)
    return model, OPTIMIZERS[opt_name](list(model.parameters())), dl

def val_loader(seed: int):
    "A validation set of 100 items (batches of 30, the last one short, so the size weighting matters)"
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(100, 20, generator=g)
    return DataLoader(TensorDataset(x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()), batch_size=30)

def theirs(seed, opt_name, device='cpu', val=False, **kw) -> dict:
    model, opt, dl = make(seed, opt_name, device, random_free=val)
    torch.manual_seed(seed + 1)
    finder = torch_lr_finder.LRFinder(model, opt, nn.CrossEntropyLoss(), device=device)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):   # its prints and tqdm
        finder.range_test(dl, val_loader=val_loader(seed) if val else None, smooth_f=SMOOTH_F, diverge_th=DIVERGE_TH, **kw)
    return finder.history

def ours(seed, opt_name, device='cpu', start_lr=None, end_lr=10, num_iter=100, step_mode='exp', val=False,
         accumulation_steps=1):
    model, opt, dl = make(seed, opt_name, device, random_free=val)
    torch.manual_seed(seed + 1)
    return lr_find(model, nn.CrossEntropyLoss(), opt, dl, start_lr=start_lr, end_lr=end_lr, num_it=num_iter,
                   step_mode=step_mode, beta=1 - SMOOTH_F, bias_correction=False, diverge_th=DIVERGE_TH, suggest=False,
                   val_loader=val_loader(seed) if val else None, accumulation_steps=accumulation_steps)

def their_smoothing(raw: list[float]) -> list[float]:
    "torch-lr-finder's recurrence, as written in LRFinder.range_test"
    out = []
    for i, loss in enumerate(raw): out.append(loss if i == 0 else SMOOTH_F * loss + (1 - SMOOTH_F) * out[-1])
    return out

def check_parity(kw, opt_name, device='cpu', seed=0, expect_stop=None):
    ref, res = theirs(seed, opt_name, device, **kw), ours(seed, opt_name, device, **kw)
    assert len(res.lrs) >= 10                                    # guard: a real curve, not two points
    assert res.lrs == ref['lr']                                  # exactly equal, and the same length
    assert their_smoothing(res.raw_losses) == ref['loss']        # bit for bit: the same training steps
    assert_close(torch.tensor(res.losses, dtype=torch.float64), torch.tensor(ref['loss'], dtype=torch.float64),
                 rtol=1e-12, atol=0)
    if expect_stop is not None: assert (res.stop_reason is not None) == expect_stop, res.stop_reason
    return res

CASES = [  # (settings, stops early?)
    (dict(start_lr=1e-5, end_lr=10, num_iter=100, step_mode='exp'), None),
    (dict(start_lr=1e-4, end_lr=1e3, num_iter=60, step_mode='exp'), True),      # blows up: the stop must match
    (dict(start_lr=1e-6, end_lr=1e-2, num_iter=30, step_mode='exp'), False),    # runs to the end, cycling the loader
    (dict(start_lr=1e-3, end_lr=10, num_iter=100, step_mode='linear'), None),
    (dict(start_lr=1e-3, end_lr=100, num_iter=50, step_mode='linear'), True),
]

@pytest.mark.parametrize('kw,stops', CASES)
def test_parity_with_torch_lr_finder(kw, stops):
    check_parity(kw, 'sgd_momentum', expect_stop=stops)

@pytest.mark.parametrize('opt_name', ['adam', 'adamw_two_groups', 'our_adamw'])
@pytest.mark.parametrize('kw', [CASES[0][0], CASES[3][0]])
def test_parity_other_optimizers(kw, opt_name):
    "Adam's state, two param groups (one without weight decay) and our own AdamW behave the same in both finders"
    check_parity(kw, opt_name)

@pytest.mark.parametrize('seed', [1, 2])
def test_parity_other_seeds(seed):
    res = check_parity(dict(start_lr=1e-5, end_lr=10, num_iter=100), 'adam', seed=seed)
    assert len(res.lrs) >= 10 and all(math.isfinite(l) for l in res.losses)

@pytest.mark.parametrize('steps', [2, 3])
def test_parity_accumulation_steps(steps):
    "Each point accumulates the gradients of `steps` batches, each loss divided by `steps`; the loss is their mean"
    res = check_parity(dict(start_lr=1e-5, end_lr=10, num_iter=60, accumulation_steps=steps), 'adam')
    assert res.raw_losses != ours(0, 'adam', start_lr=1e-5, end_lr=10, num_iter=60).raw_losses   # not vacuous

@pytest.mark.parametrize('kw', [dict(start_lr=1e-5, end_lr=10, num_iter=60), dict(start_lr=1e-4, end_lr=1e3, num_iter=40)])
def test_parity_val_loader(kw):
    "With a validation loader, each point is the mean validation loss after the step (weighted by batch size)"
    res = check_parity(dict(kw, val=True), 'sgd_momentum')
    train_only = theirs(0, 'sgd_momentum', **kw)['loss']                   # guard: validation losses are other numbers
    assert res.losses[1:5] != train_only[1:5]

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_parity_cuda():
    check_parity(dict(start_lr=1e-5, end_lr=10, num_iter=100), 'sgd_momentum', device='cuda')

def test_sweep_really_diverges_and_stops_like_theirs():
    "Guard against a vacuous parity: the early-stop case does stop before num_iter, at the same point for both"
    ref = theirs(0, 'sgd_momentum', start_lr=1e-4, end_lr=1e3, num_iter=60)
    assert len(ref['lr']) < 60
    res = ours(0, 'sgd_momentum', start_lr=1e-4, end_lr=1e3, num_iter=60)
    assert len(res.lrs) == len(ref['lr']) and res.losses[-1] > DIVERGE_TH * min(res.losses)


def _train_after(finder, seed=0, k=6):
    "Train `k` batches after running `finder` on a fresh setup; everything a run leaves behind"
    model, opt, dl = make(seed, 'adam')
    torch.manual_seed(seed + 1)
    if finder: finder(model, opt, dl)
    model.train()
    for _, (xb, yb) in zip(range(k), dl):
        opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
    return [*model.parameters(), *model.buffers(), *(v for s in opt.state.values() for v in s.values())], torch.rand(3)

def test_training_after_lr_find_is_the_training_without_it():
    """torch-lr-finder's `reset()` puts back the weights and the optimizer, but not the random generators. Ours puts
    back everything, so that training after it is bit for bit the training without a finder."""
    plain, plain_next = _train_after(None)
    after_ours, ours_next = _train_after(lambda m, o, dl: lr_find(m, F.cross_entropy, o, dl, num_it=50, suggest=False))
    assert len(plain) == len(after_ours) and all(torch.equal(a, b) for a, b in zip(plain, after_ours))
    assert torch.equal(plain_next, ours_next)
