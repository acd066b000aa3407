"""The Learner's GPU path, tested on the CPU: no host-device sync per training batch through the default callbacks,
a NaN stop that restores the last good state bit for bit, fp16 with a GradScaler (fit, lr_find, resume), and the
device-dependent code (channels_last, device copies, loader generators) where torch allows it on a CPU."""
import contextlib, copy, importlib.util, math, warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adamw_course.callback import Callback, CancelFitException, ProgressCB, Recorder, TerminateOnNaNCB
from adamw_course.checkpoint import CheckpointCB
from adamw_course.data import DataLoaders, DeviceLoader, TorchLoader, synth_dls
from adamw_course.learner import Learner
from adamw_course.models import tiny_cnn

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('gpu_check', REPO/'tools'/'gpu_check.py')
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)

# Every way to turn a tensor into Python values; on a GPU each waits for the queued work to finish.
READS = ('item', 'tolist', 'cpu', 'numpy', '__float__', '__int__', '__bool__')


pytestmark = pytest.mark.usefixtures('one_thread')      # tests/conftest.py


class ReadCounter(gc.HostReadCounter):
    "`gpu_check`'s counter of tensor reads, over every way of reading (`READS`), with their callers."
    def __init__(self): super().__init__(READS)

    def device_reads(self) -> list:
        "The calls that would sync a GPU run: all but reads of the optimizer's step counters, which stay on the CPU there."
        return [(m, w) for m, w in self.calls if not any(w.startswith(f) for f in gc.HOST_SIDE)]


class ReadLossEveryBatch(Callback):
    "The control: a callback that reads the loss with `.item()` in every training batch."
    def after_loss(self):
        if self.learn.training: self.loss = self.learn.loss.item()


def count_fit_reads(n_epochs=2, cbs=(), **kwargs):
    "Device reads during a fit of tiny_cnn on 512 synthetic images in batches of 8 (64 training batches), no progress bar."
    learn = Learner(tiny_cnn(), synth_dls(n_train=512, n_valid=32, bs=8), **kwargs)
    with learn.no_bar(), ReadCounter() as c: learn.fit(n_epochs, lr=1e-2, cbs=list(cbs))
    return learn, c.device_reads()


def test_default_callbacks_read_nothing_per_batch():
    learn, reads = count_fit_reads()
    n_batches, every = len(learn.dls.train), learn.terminate_on_nan.check_every
    assert (n_batches, every) == (64, 16)
    # per epoch: TerminateOnNaNCB's checks (every 16th batch, in after_loss, and at the end of training), the Recorder's
    # flush at the end of training, and the training and validation totals: 64 // 16 + 1 + 1 + 2 = 8
    per_epoch = n_batches // every + 1 + 1 + 2
    assert len(reads) == 2 * per_epoch, Counter(w for _, w in reads)
    assert learn.terminate_on_nan.n_checks == 2 * (n_batches // every + 1)  # one read each
    assert len(reads) / (2 * n_batches) < 0.13                              # about 1/8 of a read per training batch
    assert all(n < n_batches for n in Counter(w for _, w in reads).values())  # no place reads once per batch
    assert len(learn.recorder.losses) == 2 * n_batches and all(map(math.isfinite, learn.recorder.losses))


def test_the_counter_sees_a_read_per_batch():
    "The control: one `loss.item()` per training batch is counted, so the test above could fail."
    _, base = count_fit_reads()
    learn, reads = count_fit_reads(cbs=[ReadLossEveryBatch()])
    assert len(reads) - len(base) == 2 * len(learn.dls.train)
    assert sum('after_loss' in w for _, w in reads) == 2 * len(learn.dls.train)


def test_gpu_checks_counter_agrees():
    "tools/gpu_check.py's CPU counter (`.item`/`.tolist`/`.cpu`) sees the same reads, the Recorder's `flush` among them."
    learn = Learner(tiny_cnn(), synth_dls(n_train=512, n_valid=32, bs=8))
    with learn.no_bar(), gc.HostReadCounter() as c: learn.fit(1, lr=1e-2)
    counted = [w for _, w in c.calls if not c.host_side(w)]
    assert len(counted) == 64 // 16 + 1 + 1 + 2, Counter(counted)
    assert sum(' flush' in w for w in counted) == 1 and sum(' _check' in w for w in counted) == 64 // 16 + 1


def test_reads_per_precision():
    "bf16 reads what float32 reads; fp16 adds torch's own read per step: `GradScaler.step` checks `found_inf` with `.item()`."
    if not _fp16_supported(): pytest.skip("this torch has no CPU fp16 autocast or no GradScaler('cpu')")
    counts = {}
    for precision in ('fp32', 'bf16', 'fp16'):
        learn, reads = count_fit_reads(n_epochs=1, mixed_precision=precision, opt_func=torch.optim.SGD)
        counts[precision] = Counter(w.split(':')[0] for _, w in reads)
    assert counts['bf16'] == counts['fp32'] and sum(counts['fp32'].values()) == 64 // 16 + 4
    extra = counts['fp16'] - counts['fp32']
    assert dict(extra) == {'torch/amp/grad_scaler.py': 64}, extra


def test_check_every_sets_the_number_of_reads():
    learn, reads = count_fit_reads(n_epochs=1, cbs=[])
    learn4 = Learner(tiny_cnn(), synth_dls(n_train=512, n_valid=32, bs=8), cbs=[])
    learn4.remove_cbs([learn4.terminate_on_nan]); learn4.add_cbs([TerminateOnNaNCB(check_every=4)])
    with learn4.no_bar(), ReadCounter() as c: learn4.fit(1, lr=1e-2)
    assert len(c.device_reads()) - len(reads) == 64 // 4 - 64 // 16
    assert learn4.terminate_on_nan.n_checks == 64 // 4 + 1
    for bad in (0, 2.5, True, None):
        with pytest.raises(ValueError, match='check_every must be an int >= 1'): TerminateOnNaNCB(check_every=bad)


def test_recorder_reads_lazily_and_matches_item():
    "Mid-epoch reads (a property, state_dict) flush the pending losses; the values are those `.item()` gives, in order."
    class Spy(Callback):
        order = 55                                   # after the Recorder's after_batch
        def __init__(self): self.items, self.seen = [], []
        def after_loss(self):
            if self.learn.training: self.items.append(self.learn.loss.item())
        def after_batch(self):
            if self.learn.training and self.learn.iter == 2:
                self.seen.append(list(self.learn.recorder.losses))
                self.state = copy.deepcopy(self.learn.recorder.state_dict())
    spy = Spy()
    learn = Learner(tiny_cnn(), synth_dls(), cbs=[spy])
    with learn.no_bar(): learn.fit(2, lr=1e-2)
    rec = learn.recorder
    assert rec.losses == spy.items                                  # bit-identical floats, same order
    assert spy.seen[0] == spy.items[:3] and spy.seen[1] == spy.items[:7]
    assert spy.state['losses'] == spy.items[:7] and spy.state['smoother']['t'] == 7
    a, smooth = 0., []
    for t, l in enumerate(spy.items, 1):
        a = 0.98 * a + 0.02 * l; smooth.append(a / (1 - 0.98 ** t))
    assert rec.smooth_losses == pytest.approx(smooth, rel=1e-12, abs=0)


def test_live_bar_reads_the_loss_at_most_once_a_second():
    bar = ProgressCB(live=True)
    clock = iter(range(0, 10_000, 1))
    bar.clock = lambda: next(clock) / 4                                         # a fake clock: 0.25 s per batch
    learn = Learner(tiny_cnn(), synth_dls(n_train=512, n_valid=32, bs=8), cbs=[bar])
    learn.remove_cbs([cb for cb in learn.cbs if type(cb) is ProgressCB and cb is not bar])   # keep only the live one
    with contextlib.redirect_stdout(None), ReadCounter() as c:
        learn.fit(1, lr=1e-2)
    flushes = [w for _, w in c.device_reads() if ' flush' in w]
    assert len(flushes) == 64 // 4 + 1, Counter(w for _, w in c.device_reads())   # every 4th batch (1 s), and at the end
    with pytest.raises(ValueError, match='loss_every must be a number of seconds'): ProgressCB(loss_every=-1)


# ---------------------------------------------------------------- the NaN stop keeps the last good state
class NaNLossAt:
    "Cross-entropy, except that call `k` (counting from 1) returns NaN."
    def __init__(self, k=None): self.k, self.calls = k, 0
    def __call__(self, pred, targ):
        self.calls += 1
        loss = F.cross_entropy(pred, targ)
        return loss * math.nan if self.calls == self.k else loss


class _InfGrad(torch.autograd.Function):
    "The identity in the forward pass; an infinite gradient in the backward pass."
    @staticmethod
    def forward(ctx, x): return x.view_as(x)
    @staticmethod
    def backward(ctx, g): return torch.full_like(g, math.inf)


class InfGradAt(nn.Module):
    "The identity, whose backward pass number `k` (counting from 1) gives an infinite gradient: the loss stays finite."
    def __init__(self, k=None): super().__init__(); self.k, self.calls = k, 0
    def forward(self, x):
        if not self.training: return x
        self.calls += 1
        return _InfGrad.apply(x) if self.calls == self.k else x


def model_with(mid: nn.Module) -> nn.Sequential:
    "tiny_cnn with `mid` after its convolution (so the convolution's weights get its gradient)."
    m = tiny_cnn()
    return nn.Sequential(m[0], mid, *m[1:])


class StopBefore(Callback):
    "Stop the fit right before training batch `batch` of epoch `epoch`: the reference for a restored state."
    order = -100
    def __init__(self, epoch, batch): self.at = (epoch, batch)
    def before_batch(self):
        if self.learn.training and (self.learn.epoch, self.learn.iter) == self.at: raise CancelFitException()


def nan_learner(model, loss_func=None, check_every=4):
    dls = synth_dls(n_train=160, bs=16)                               # 10 training batches, 1 validation batch
    learn = Learner(model, dls, loss_func=loss_func or NaNLossAt())
    learn.remove_cbs([learn.terminate_on_nan]); learn.add_cbs([TerminateOnNaNCB(check_every)])
    return learn


def fit_catching(learn, n_epochs=2):
    with warnings.catch_warnings(record=True) as caught, learn.no_bar():
        warnings.simplefilter('always')
        learn.fit(n_epochs, lr=1e-2)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def assert_same_state(learn, ref):
    "Model parameters and buffers, and optimizer state, bit for bit; and nothing is NaN."
    s, r = learn.model.state_dict(), ref.model.state_dict()
    assert s.keys() == r.keys() and all(torch.equal(s[k], r[k]) for k in s)
    assert all(torch.isfinite(v).all() for v in s.values() if v.is_floating_point())
    o, p = learn.opt.state_dict()['state'], ref.opt.state_dict()['state']
    assert o.keys() == p.keys() and all(o[i].keys() == p[i].keys() for i in o)
    assert all(torch.equal(o[i][k], p[i][k]) for i in o for k in o[i])
    assert all(torch.isfinite(v).all() for st in o.values() for v in st.values())


def test_nan_loss_restores_the_last_checked_state():
    # 10 training + 1 validation batch per epoch: call 17 is epoch 1, batch 5. With a check every 4 batches, epoch 1 is
    # checked at batch 3 (all finite: snapshot) and at batch 7, which finds batch 5's NaN: back to before batch 3.
    learn = nan_learner(tiny_cnn(), NaNLossAt(17))
    msgs = fit_catching(learn, 3)
    assert len(msgs) == 1 and 'the loss is nan at epoch 1, batch 5' in msgs[0] and 'before epoch 1, batch 3' in msgs[0], msgs
    info = learn.terminate_on_nan.info
    assert (info['what'], info['epoch'], info['batch'], info['restored_to'], info['lr']) == ('loss', 1, 5, (1, 3), 0.01)
    assert learn.loss_func.calls == 11 + 8                            # it stopped in after_loss of batch 7
    ref = nan_learner(tiny_cnn())
    with ref.no_bar(): ref.fit(3, lr=1e-2, cbs=[StopBefore(1, 3)])
    assert_same_state(learn, ref)


def test_nan_loss_in_the_checked_batch_stops_before_its_backward():
    learn = nan_learner(tiny_cnn(), NaNLossAt(11 + 4))               # epoch 1, batch 3: a checked batch
    msgs = fit_catching(learn, 3)
    assert 'epoch 1, batch 3' in msgs[0] and 'before epoch 1, batch 3' in msgs[0], msgs
    ref = nan_learner(tiny_cnn())
    with ref.no_bar(): ref.fit(3, lr=1e-2, cbs=[StopBefore(1, 3)])
    assert_same_state(learn, ref)                                       # batch norm's statistics included


def test_inf_gradient_with_finite_loss_restores_the_last_checked_state():
    # backward pass 7 is epoch 0, batch 6: its loss is finite, its gradient infinite. Checked at batch 7: back to batch 3.
    learn = nan_learner(model_with(InfGradAt(7)))
    msgs = fit_catching(learn, 2)
    assert len(msgs) == 1 and 'a gradient entry is' in msgs[0] and 'epoch 0, batch 6' in msgs[0], msgs
    info = learn.terminate_on_nan.info
    assert info['what'] == 'gradient' and math.isfinite(info['loss']) and not math.isfinite(info['grad'])
    assert info['restored_to'] == (0, 3)
    ref = nan_learner(model_with(InfGradAt()))
    with ref.no_bar(): ref.fit(2, lr=1e-2, cbs=[StopBefore(0, 3)])
    assert_same_state(learn, ref)


def test_nan_stop_before_the_first_check_restores_the_initial_state():
    learn = nan_learner(model_with(InfGradAt(1)), check_every=16)     # the first step already goes wrong
    init = {k: v.clone() for k, v in learn.model.state_dict().items()}
    msgs = fit_catching(learn, 2)
    assert 'before epoch 0, batch 0' in msgs[0]
    assert all(torch.equal(v, init[k]) for k, v in learn.model.state_dict().items())
    assert learn.opt.state_dict()['state'] == {}                       # no optimizer state: as before the first step


def test_fp16_does_not_flag_gradients_that_the_scaler_skips():
    "With fp16 the GradScaler skips a step whose gradients overflow (and lowers its scale): that is not a reason to stop."
    learn = Learner(model_with(InfGradAt(3)), synth_dls(), mixed_precision='fp16')
    msgs = fit_catching(learn, 2)
    assert msgs == [] and not learn.terminate_on_nan.check_grads
    assert learn.scaler.get_scale() < 2.0 ** 16                        # the skipped step halved the scale
    assert all(torch.isfinite(v).all() for v in learn.model.state_dict().values() if v.is_floating_point())


# ---------------------------------------------------------------- fp16 with a GradScaler, on the CPU
def _fp16_supported() -> bool:
    try:
        with torch.autocast('cpu', dtype=torch.float16): torch.ones(2, 2) @ torch.ones(2, 2)
        torch.amp.GradScaler('cpu')
        return True
    except (RuntimeError, TypeError, ValueError): return False

fp16 = pytest.mark.skipif(not _fp16_supported(), reason="this torch has no CPU fp16 autocast or no GradScaler('cpu')")


@fp16
def test_fp16_fit_trains():
    learn = Learner(tiny_cnn(), synth_dls(n_train=256), mixed_precision='fp16', device='cpu')
    assert learn.amp_dtype == torch.float16 and learn.scaler.is_enabled()
    with learn.no_bar(): learn.fit(4, lr=1e-2)
    train = [v[0] for v in learn.recorder.values]
    assert train[-1] < train[0] and learn.terminate_on_nan.info is None
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


@fp16
def test_fp16_lr_find_restores_the_model():
    learn = Learner(tiny_cnn(), synth_dls(), mixed_precision='fp16', device='cpu')
    with learn.no_bar(): learn.fit(1, lr=1e-2)
    model = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt = {i: {k: v.clone() for k, v in s.items()} for i, s in learn.opt.state_dict()['state'].items()}
    scaler = learn.scaler.state_dict()
    res = learn.lr_find(num_it=20, suggest=False)
    assert len(res.lrs) == 20 and all(map(math.isfinite, res.losses[:5]))
    assert all(torch.equal(v, model[k]) for k, v in learn.model.state_dict().items())
    assert all(torch.equal(v, opt[i][k]) for i, s in learn.opt.state_dict()['state'].items() for k, v in s.items())
    assert learn.scaler.state_dict() == scaler


@fp16
def test_fp16_resume_from_checkpoint_is_exact(tmp_path):
    class StopAfterEpoch(Callback):
        order = 80                                                      # after CheckpointCB (70) has saved
        def after_epoch(self):
            if self.learn.epoch == 1: raise CancelFitException()
    def make(seed=0): return Learner(tiny_cnn(seed), synth_dls(), mixed_precision='fp16', device='cpu')
    path = tmp_path/'fp16.pt'
    first = make()
    with first.no_bar(): first.fit(4, lr=1e-2, cbs=[CheckpointCB(path), StopAfterEpoch()])
    ref = make()
    with ref.no_bar(): ref.fit(4, lr=1e-2)
    resumed = make(seed=1).load(path)
    assert resumed.epochs_done == 2
    with resumed.no_bar(): resumed.fit(4, lr=1e-2, start_epoch=resumed.epochs_done)
    assert_same_state(resumed, ref)
    assert resumed.scaler.state_dict() == ref.scaler.state_dict()
    assert resumed.recorder.losses == ref.recorder.losses and resumed.recorder.values == ref.recorder.values


# ---------------------------------------------------------------- device-dependent code, on the CPU
def no_dropout() -> nn.Sequential:
    "tiny_cnn without its dropout, whose masks depend on the global generator and on the memory layout."
    return nn.Sequential(*[m for m in tiny_cnn() if not isinstance(m, nn.Dropout)])


def test_channels_last_path_on_cpu():
    "The CUDA layout, forced on the CPU: inputs arrive channels_last (4-d only), and training ends where NCHW does."
    # SGD, not AdamW: Adam's normalized step would blow up the rounding noise in the conv bias's ~0 gradient (batch norm follows)
    ref = Learner(no_dropout(), synth_dls(), opt_func=torch.optim.SGD)
    assert not ref.channels_last                                        # off on the CPU by default
    learn = Learner(no_dropout(), synth_dls(), opt_func=torch.optim.SGD)
    learn.channels_last = True
    learn.model.to(memory_format=torch.channels_last)
    xb = next(iter(synth_dls().train))[0]
    assert learn._to_device(xb).is_contiguous(memory_format=torch.channels_last)
    assert learn._to_device(torch.ones(4, 3)).is_contiguous()
    for l in (learn, ref):
        with l.no_bar(): l.fit(2, lr=0.1)
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(learn.model.state_dict().values(), ref.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(learn.get_preds()[0], ref.get_preds()[0], rtol=1e-4, atol=1e-5)


def test_device_copies_and_loader_generators_on_cpu():
    "Batches from a torch DataLoader (copied with `.to(device)`) train exactly as the same batches from a DeviceLoader."
    dls = synth_dls()
    x, y = dls.train.x, dls.train.y
    assert dls.train.generator.device == dls.train.device == torch.device('cpu')   # the generator lives with the data
    plain = DeviceLoader(x, y, bs=16, device='cpu')                                 # in order: no shuffle, no augment
    norm = DeviceLoader(x, y, bs=len(x), device='cpu')
    xs = next(iter(norm))[0]
    tl = TorchLoader(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, y), batch_size=16), device='cpu')
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(tl, plain))
    learn_t = Learner(no_dropout(), DataLoaders(tl, dls.valid))   # a torch DataLoader draws from the global generator
    learn_d = Learner(no_dropout(), DataLoaders(plain, dls.valid))
    for l in (learn_t, learn_d):
        with l.no_bar(): l.fit(2, lr=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(learn_t.model.state_dict().values(), learn_d.model.state_dict().values()))
    s = dls.train.state_dict()                                            # the device generator resumes the same order
    first = [yb for _, yb in dls.train]
    dls.train.load_state_dict(s)
    assert all(torch.equal(a, b) for a, b in zip(first, [yb for _, yb in dls.train]))
