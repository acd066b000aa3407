"""Reliability of the library on failed loads, interrupted fits and bad `lr_find` arguments (issue 14, part B).

`CASES` is the table: one row per bad input, with what it does, the exception it must raise, a fragment of its
one-line message, and what must be left unchanged. "Unchanged" is checked bit for bit: every tensor and number of the
learner (weights, buffers, optimizer state and param groups, GradScaler, callback states, epoch counter, every random
state, the loader's own included), or of the model and optimizer given to `lr_find`, and the bytes of the files
involved. Every row failed before the fix except `lr_find: end_lr <= start_lr`, which already held and stays as a
guard. The tests after the table check the other side: a save at the end of an epoch still resumes bit for bit, and
a checkpoint written before checkpoints named their optimizer still loads."""
import copy, math, warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adamw_course.callback import CancelFitException, Callback
from adamw_course.checkpoint import CheckpointError, callback_states, get_rng_state
from adamw_course.data import DataLoaders, DeviceLoader
from adamw_course.learner import Learner
from adamw_course.lr_finder import LRFinderWarning, lr_find, suggest_lrs, sweep_lrs
from adamw_course.sgd import SGD

torch.set_num_threads(1)


# ---------------------------------------------------------------- tiny learners, and what "unchanged" means
def model(num_classes=2, extra=False, seed=0) -> nn.Sequential:
    "A small CNN with batch norm and dropout (and, with `extra`, one more layer: other keys)."
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1), nn.AdaptiveAvgPool2d(1),
              nn.Flatten(), nn.Linear(4, num_classes)]
    return nn.Sequential(*layers, *([nn.Linear(num_classes, num_classes)] if extra else []))


def learner(fit=1, cbs=(), **kw) -> Learner:
    "A learner on 32 shuffled, augmented 8x8 images, on the CPU, fitted for `fit` epochs (0: never fitted)."
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    dls = DataLoaders(DeviceLoader(x[:32], y[:32], 8, shuffle=True, augment=True, drop_last=True, device='cpu', seed=0),
                      DeviceLoader(x[32:], y[32:], 16, device='cpu'))
    net = kw.pop('net', None)
    learn = Learner(model() if net is None else net, dls, device='cpu', cbs=cbs, **kw)
    if fit:
        with learn.no_bar(): learn.fit(fit, lr=1e-2)
    return learn


def state_of(learn) -> list:
    "Copies of everything a load may change."
    return copy.deepcopy([learn.model.state_dict(), learn.opt and learn.opt.state_dict(), learn.scaler.state_dict(),
                          callback_states(learn.cbs), learn.epochs_done, learn._pending_cb_state,
                          get_rng_state(learn.dls.train)])


def equal(a, b) -> bool:
    "`a == b` all the way down: tensors bit for bit, NaN equal to NaN."
    if torch.is_tensor(a): return torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return type(a) == type(b) and len(a) == len(b) and all(map(equal, a, b))
    return a == b or (a != a and b != b)


def files(*paths) -> dict:
    "The bytes of each path (None where there is no file)."
    return {str(p): p.read_bytes() if p.exists() else None for p in paths}


class Fussy(Callback):
    "A callback with a state that it refuses to load back: makes a load fail after the optimizer was applied."
    def state_dict(self): return {'n': 1}
    def load_state_dict(self, state): raise ValueError('Fussy refuses every state')


class Boom(Callback):
    "Raise in the middle of epoch 1, after a step has changed the weights."
    def after_step(self):
        if self.learn.epoch == 1 and self.learn.iter == 1: raise RuntimeError('simulated crash')


# ---------------------------------------------------------------- the scenarios: each returns (act, watch)
def load_case(write, target=learner, **load_kw):
    "Write a checkpoint with `write(path)`, build `target()`; the act loads it, the watch is the learner and the file."
    def make(tmp: Path):
        path = tmp / 'ckpt.pt'
        write(path)
        learn = target()
        return (lambda: learn.load(path, **load_kw)), (lambda: [state_of(learn), files(path)])
    return make


def saved_by(**kw):
    "A writer: the checkpoint of `learner(**kw)` after one epoch."
    return lambda path: learner(**kw).save(path)


def edited(change, **kw):
    "A writer: `learner(**kw)`'s checkpoint, with `change(ckpt)` applied to it."
    def write(path):
        learner(**kw).save(path)
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)
    return write


def raw(content: Callable[[bytes], bytes]):
    "A writer: `content(bytes of a good checkpoint)`."
    def write(path):
        learner().save(path)
        path.write_bytes(content(path.read_bytes()))
    return write


def save_mid_epoch(tmp: Path):
    "A fit dies inside epoch 1; the earlier whole-epoch checkpoint sits where the save would go."
    path = tmp / 'ckpt.pt'
    learn = learner()
    learn.save(path)
    with pytest.raises(RuntimeError), learn.no_bar(): learn.fit(3, lr=1e-2, start_epoch=1, cbs=[Boom()])
    return (lambda: learn.save(path)), (lambda: [files(path, tmp / 'ckpt.pt.tmp'), state_of(learn)])


class BoomFirst(Callback):
    "Raise in the middle of epoch 0, after a step has changed the weights."
    def after_step(self):
        if self.learn.epoch == 0 and self.learn.iter == 1: raise RuntimeError('simulated crash')


def save_mid_first_epoch_of_a_new_fit(tmp: Path):
    "A learner fitted for 1 epoch starts a new fit, which dies inside its epoch 0: the old count (1) must not pass for it."
    path = tmp / 'ckpt.pt'
    learn = learner()
    learn.save(path)
    with pytest.raises(RuntimeError), learn.no_bar(): learn.fit(3, lr=1e-2, cbs=[BoomFirst()])
    return (lambda: learn.save(path)), (lambda: [files(path, tmp / 'ckpt.pt.tmp'), state_of(learn)])


def finder(**kw):
    "lr_find on a tiny MLP with torch's AdamW, with `kw`; `net`/`opt` replace the model or optimizer."
    def make(tmp: Path):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = torch.optim.AdamW(net.parameters(), weight_decay=0.01)
        args = dict(net=net, opt=opt)
        for k in ('net', 'opt'):
            if k in kw: args[k] = kw.pop(k)(net)
        g = torch.Generator().manual_seed(0)
        data = [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(4)]
        watch = lambda: copy.deepcopy([net.state_dict(), opt.state_dict(), torch.get_rng_state()])
        return (lambda: lr_find(args['net'], F.cross_entropy, args['opt'], data, **kw)), watch
    return make


def learner_finder(**kw):
    "`Learner.lr_find(**kw)` on a fitted learner."
    def make(tmp: Path):
        learn = learner()
        return (lambda: learn.lr_find(**kw)), (lambda: state_of(learn))
    return make


@dataclass
class Case:
    id: str
    make: Callable          # tmp_path -> (act, watch)
    exc: type
    fragment: str
    unchanged: str


INCOMPLETE = 'is not a complete checkpoint'
LEARNER = 'the learner (every tensor, number and random state) and the file'
CASES = [
    # 1. files that are not complete checkpoints
    Case('load: empty file', load_case(raw(lambda b: b'')), CheckpointError, INCOMPLETE, LEARNER),
    Case('load: truncated file', load_case(raw(lambda b: b[:len(b) // 2])), CheckpointError, INCOMPLETE, LEARNER),
    Case('load: random bytes', load_case(raw(lambda b: bytes(range(256)) * 16)), CheckpointError, INCOMPLETE, LEARNER),
    Case('load: weights only, not a checkpoint', load_case(lambda p: torch.save(model().state_dict(), p)),
         CheckpointError, 'it has no model, opt, scaler, epochs_done, cbs, rng', LEARNER),
    Case('load: an entry missing', load_case(edited(lambda c: c.pop('rng'))), CheckpointError, 'it has no rng', LEARNER),
    Case('load: an entry of the wrong type', load_case(edited(lambda c: c.update(epochs_done='2'))), CheckpointError,
         'its epochs_done not as save_checkpoint writes them', LEARNER),
    # 3. another architecture: all or nothing
    Case('load: other shapes', load_case(saved_by(), lambda: learner(net=model(num_classes=3))), CheckpointError,
         '6.weight [2, 4] (the model: [3, 4])', LEARNER),
    Case('load: other shapes, strict=False', load_case(saved_by(), lambda: learner(net=model(num_classes=3)), strict=False),
         CheckpointError, 'tensor(s) of another shape', LEARNER),
    Case('load: the model has more keys', load_case(saved_by(), lambda: learner(net=model(extra=True))), CheckpointError,
         'no 7.weight, 7.bias, which the model has', LEARNER),
    Case('load: the checkpoint has more keys', load_case(saved_by(net=model(extra=True))), CheckpointError,
         '7.weight, 7.bias, which the model does not have', LEARNER),
    Case('load: another number of param groups', load_case(saved_by(), lambda: learner(wd_bn_bias=True)), CheckpointError,
         "its optimizer has 2 param group(s) and this learner's has 1", LEARNER),
    Case('load: a hyper-parameter the optimizer refuses',
         load_case(edited(lambda c: c['opt']['param_groups'][0].update(lr=-1.))), CheckpointError,
         'so the learner was put back as it was', LEARNER),
    Case('load: a callback refuses its state, after the optimizer was loaded',
         load_case(saved_by(cbs=[Fussy()]), lambda: learner(cbs=[Fussy()])), CheckpointError,
         'Fussy refuses every state', LEARNER),
    # 4. another optimizer
    Case('load: SGD checkpoint into an AdamW learner', load_case(saved_by(opt_func=SGD)), CheckpointError,
         "its optimizer is SGD and this learner's is AdamW", LEARNER),
    Case('load: AdamW checkpoint into an SGD learner without an optimizer yet',
         load_case(saved_by(), lambda: learner(fit=0, opt_func=SGD)), CheckpointError,
         "its optimizer is AdamW and this learner's is SGD", LEARNER + ' (no optimizer created)'),
    Case('load: SGD checkpoint that does not name its optimizer',
         load_case(edited(lambda c: c.pop('opt_class'), opt_func=SGD)), CheckpointError,
         "other hyper-parameters than this learner's AdamW", LEARNER),
    # 2. a save inside an epoch
    Case('save: after an exception inside an epoch', save_mid_epoch, CheckpointError, 'the last fit stopped inside epoch 1',
         'the earlier checkpoint at that path, no temporary file, and the learner'),
    Case('save: a new fit dies inside its first epoch', save_mid_first_epoch_of_a_new_fit, CheckpointError,
         'the last fit stopped inside epoch 0', 'the earlier checkpoint at that path, no temporary file, and the learner'),
    # 5. lr_find arguments
    Case('lr_find: weight_decay=-1', finder(weight_decay=-1), ValueError, 'weight_decay=-1 must be a finite number >= 0',
         'the model, the optimizer and the global generator'),
    Case('lr_find: weight_decay=nan', finder(weight_decay=math.nan), ValueError, 'weight_decay=nan must be a finite number',
         'the model, the optimizer and the global generator'),
    Case('lr_find: end_lr=inf', finder(end_lr=math.inf), ValueError, 'end_lr=inf must be a finite number',
         'the model, the optimizer and the global generator'),
    Case('lr_find: end_lr=nan', finder(end_lr=math.nan), ValueError, 'end_lr=nan must be a finite number',
         'the model, the optimizer and the global generator'),
    Case('lr_find: start_lr=inf', finder(start_lr=math.inf), ValueError, 'start_lr=inf must be a finite number',
         'the model, the optimizer and the global generator'),
    Case('lr_find: end_lr <= start_lr', finder(start_lr=1e-2, end_lr=1e-3), ValueError,
         'start_lr=0.01 must be smaller than end_lr=0.001', 'the model, the optimizer and the global generator'),
    Case('lr_find: num_it too small for suggestions', finder(num_it=10), ValueError, 'num_it must be at least 11',
         'the model, the optimizer and the global generator'),
    Case('lr_find: a model with no parameters', finder(net=lambda net: nn.ReLU()), ValueError,
         'the model (ReLU) has no parameters', 'the model, the optimizer and the global generator'),
    Case("lr_find: an optimizer over another model's parameters",
         finder(opt=lambda net: torch.optim.SGD(nn.Linear(8, 3).parameters(), lr=0.1)), ValueError,
         "holds none of the model's parameters", 'the model, the optimizer and the global generator'),
    Case('Learner.lr_find: end_lr=inf', learner_finder(end_lr=math.inf), ValueError, 'end_lr=inf must be a finite number',
         'the learner'),
    Case('Learner.lr_find: wd=-1', learner_finder(wd=-1), ValueError, 'weight_decay=-1 must be a finite number >= 0',
         'the learner'),
]


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, tmp_path):
    act, watch = case.make(tmp_path)
    before = watch()
    with pytest.raises(case.exc) as err: act()
    msg = str(err.value)
    assert case.fragment in msg, msg
    assert '\n' not in msg, 'the message must be one line'
    assert equal(watch(), before), f'changed: {case.unchanged}'


# ---------------------------------------------------------------- warnings: a short curve is not blamed on a blow-up
def test_short_curve_warning_does_not_blame_a_blow_up():
    lrs = sweep_lrs(1e-5, 1., 15)
    with pytest.warns(LRFinderWarning) as ws: suggest_lrs(lrs, [2.] * 15, skip_start=1, skip_end=5)
    assert 'only 9 usable points' in str(ws[0].message) and 'blew up' not in str(ws[0].message)


def test_stopped_run_warning_says_why_it_stopped():
    torch.manual_seed(0)
    net = nn.Linear(8, 3)
    data = [(torch.randn(16, 8), torch.randint(0, 3, (16,)))]
    calls = iter(range(1000))
    nan_after_5 = lambda p, t: F.cross_entropy(p, t) * (math.nan if next(calls) >= 5 else 1.)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        res = lr_find(net, nan_after_5, torch.optim.SGD(net.parameters(), lr=0.1), data, num_it=20)
    assert res.valley is None
    short = [str(w.message) for w in ws if 'usable points' in str(w.message)]
    assert len(short) == 1 and 'The run stopped early, the loss was nan at iteration 5' in short[0], short


# ---------------------------------------------------------------- what must keep working
def _fit_outcome(learn):
    return [learn.model.state_dict(), learn.opt.state_dict()['state'], learn.recorder.losses, learn.recorder.values]


def test_save_at_the_end_of_an_epoch_resumes_bit_for_bit(tmp_path):
    "learn.save() after a fit cancelled at the end of epoch 0, loaded into a fresh learner: the same run as an unbroken one."
    class StopAfterFirst(Callback):
        order = 80                                      # after the Recorder has recorded the epoch
        def after_epoch(self):
            if self.learn.epoch == 0: raise CancelFitException()
    ref = learner(fit=3)
    first = learner(fit=0)
    with first.no_bar(): first.fit(3, lr=1e-2, cbs=[StopAfterFirst()])
    first.save(tmp_path / 'ckpt.pt')
    resumed = learner(fit=0, net=model(seed=5)).load(tmp_path / 'ckpt.pt')
    assert resumed.epochs_done == 1
    with resumed.no_bar(): resumed.fit(3, lr=1e-2, start_epoch=1)
    assert equal(_fit_outcome(resumed), _fit_outcome(ref))


def test_a_loaded_learner_can_be_saved_again(tmp_path):
    "After a crash inside an epoch, loading a whole-epoch checkpoint makes the learner savable again."
    learn = learner()
    learn.save(tmp_path / 'a.pt')
    with pytest.raises(RuntimeError), learn.no_bar(): learn.fit(3, lr=1e-2, start_epoch=1, cbs=[Boom()])
    learn.load(tmp_path / 'a.pt').save(tmp_path / 'b.pt')
    assert equal(torch.load(tmp_path / 'b.pt', weights_only=True)['model'], torch.load(tmp_path / 'a.pt', weights_only=True)['model'])


def test_checkpoint_without_optimizer_name_still_loads(tmp_path):
    "A checkpoint written before checkpoints named their optimizer loads into a learner with the same optimizer."
    src = learner()
    src.save(tmp_path / 'ckpt.pt')
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    ckpt.pop('opt_class', None)
    torch.save(ckpt, tmp_path / 'old.pt')
    loaded = learner(fit=0, net=model(seed=3)).load(tmp_path / 'old.pt')
    assert equal(loaded.model.state_dict(), src.model.state_dict())
    assert equal(loaded.opt.state_dict()['state'], src.opt.state_dict()['state'])


def test_weights_alone_load_across_optimizers(tmp_path):
    "with_opt=False takes the weights of an AdamW checkpoint into an SGD learner, leaving its optimizer alone."
    learner().save(tmp_path / 'ckpt.pt')
    sgd = learner(fit=0, opt_func=SGD).load(tmp_path / 'ckpt.pt', with_opt=False)
    assert sgd.opt is None
    assert equal(sgd.model.state_dict(), torch.load(tmp_path / 'ckpt.pt', weights_only=True)['model'])
