"""Time one epoch of `adamw_course.learner.Learner` against a hand-written loop doing the same work.

Both sides get the same model (copies of one initialization), the same batches (the training loader is rewound to
the same random state before every epoch), the same optimizer (`adamw_course.adamw.AdamW`), the same precision
settings and the same number of batches, and both run the validation pass (loss and accuracy). The Learner runs with
its default callbacks (`TerminateOnNaNCB`, `Recorder`) and without the progress display (`learn.no_bar()`).

Two hand loops are timed:
- `hand`: the usual loop that also reads each batch's loss (`loss.item()`), as most loops that report a training loss
  do. This is the reference for the target ratio (<= 1.05).
- `hand, no .item()`: the same loop without reading the loss, so without a host-device sync per batch. On a CPU it is
  the same loop; on a GPU it shows what the per-batch sync costs. The Learner's default callbacks read nothing per
  batch (the Recorder reads its losses once per epoch, the NaN check every 16 batches), so on a GPU this is the loop
  to compare it with.

The three runs alternate in one process (after a warm-up epoch each), `--repeats` times. For each, the script prints
the median wall-clock time per epoch and the median of the per-repeat ratios. On the CPU it also measures the process's
CPU time, which other jobs on a shared machine disturb much less than the wall clock, and by default it uses one
thread (`--threads`): the loop's overhead does not depend on the thread count, and a single thread is not stalled by
a sibling thread that the OS descheduled.

    python benchmarks/learner_epoch.py                     # CPU: small_cnn on a CIFAR-10 subset
    python benchmarks/learner_epoch.py --device cuda       # GPU: WRN-22, batch size 128, bf16, channels_last

Measured on this course's 2-core CPU, shared with other jobs at the time (load average 4-6), with the defaults
(small_cnn, 600 training and 300 test images, batch size 64, 1 thread) and `--repeats 20`, after the callbacks
stopped reading the loss per batch:

    wall Learner / hand: median ratio 1.029
     cpu Learner / hand: median ratio 1.025

With `--threads 2` on the same busy machine the epoch times spread over a factor of 40 (0.29 s to 12 s), so only the
ratio of minima means anything there: 1.033 (wall), 1.031 (CPU).
"""
import argparse, copy, statistics, time

import torch
import torch.nn.functional as F

from adamw_course.adamw import AdamW
from adamw_course.data import DataLoaders, cifar10
from adamw_course.callback import accuracy
from adamw_course.learner import Learner
from adamw_course.models import small_cnn, wrn_22


class Take:
    "The first `n` batches of loader `dl` (all if `n` is None), with `dl`'s random state and device."
    def __init__(self, dl, n=None): self.dl, self.n = dl, min(n or len(dl), len(dl))
    def __len__(self): return self.n
    def __iter__(self):
        for i, b in enumerate(self.dl):
            if i == self.n: break
            yield b
    @property
    def device(self): return self.dl.device
    def state_dict(self): return self.dl.state_dict()
    def load_state_dict(self, state): self.dl.load_state_dict(state)


def hand_epoch(model, dls, opt, amp_dtype, channels_last, record=True):
    "One epoch written by hand: train (reading each loss if `record`), then validate."
    device = dls.device
    autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    model.train()
    losses = []
    for xb, yb in dls.train:
        if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(): loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if record: losses.append(loss.item())
    model.eval()
    tot, n = torch.zeros(2, device=device), 0
    with torch.no_grad():
        for xb, yb in dls.valid:
            if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                pred = model(xb)
                loss = F.cross_entropy(pred, yb)
            tot += torch.stack([loss.float(), accuracy(pred, yb)]) * len(yb)
            n += len(yb)
    return (tot / n).tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--repeats', type=int, default=None, help='timed epochs per side (default: 7 on CPU, 3 on CUDA)')
    p.add_argument('--batches', type=int, default=None, help='training batches per epoch (default: all)')
    p.add_argument('--n-per-class', type=int, default=None, help='CIFAR-10 images per class (default: 60 on CPU, all on CUDA)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default: 1)')
    args = p.parse_args()
    cuda = args.device == 'cuda'
    if cuda and not torch.cuda.is_available(): p.error('--device cuda, but torch sees no CUDA GPU.')
    repeats = args.repeats or (3 if cuda else 10)
    n_per_class = args.n_per_class or (None if cuda else 60)
    if not cuda: torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True

    data = cifar10(n_per_class=n_per_class, n_test_per_class=None if n_per_class is None else n_per_class // 2,
                   bs=128 if cuda else 64, device=args.device)
    dls = DataLoaders(Take(data.train, args.batches), Take(data.valid))
    torch.manual_seed(0)
    model0 = wrn_22() if cuda else small_cnn()
    lr = 3e-3

    learn = Learner(copy.deepcopy(model0), dls, opt_func=AdamW, mixed_precision='bf16' if cuda else None)
    hands = {}
    for name, record in (('hand', True), ('hand, no .item()', False)):
        m = copy.deepcopy(model0).to(learn.device)
        if learn.channels_last: m = m.to(memory_format=torch.channels_last)
        hands[name] = (m, AdamW(m.parameters(), lr=lr), record)

    state0 = dls.train.state_dict()
    def run_learner():
        with learn.no_bar(): learn.fit(1, lr=lr)
    def run_hand(name):
        m, opt, record = hands[name]
        hand_epoch(m, dls, opt, learn.amp_dtype, learn.channels_last, record)
    runs = {'Learner': run_learner, **{name: (lambda name=name: run_hand(name)) for name in hands}}

    def timed(f):
        "Wall-clock and process CPU seconds of one epoch run by `f`."
        dls.train.load_state_dict(state0)                 # the same batches for everyone
        if cuda: torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        f()
        if cuda: torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu

    print(f'device: {torch.cuda.get_device_name() if cuda else "cpu"} | torch {torch.__version__} | threads {torch.get_num_threads()}')
    print(f'model: {"wrn_22" if cuda else "small_cnn"} ({sum(p.numel() for p in model0.parameters()):,} params) | '
          f'autocast: {learn.amp_dtype} | channels_last: {learn.channels_last} | batch size {data.train.bs} | '
          f'{len(dls.train)} training + {len(dls.valid)} validation batches per epoch | {repeats} repeats')
    for f in runs.values(): timed(f)                      # warm-up (cudnn autotuning, allocator, caches)
    wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]   # alternate who goes first
        for name in order:
            w, c = timed(runs[name])
            wall[name].append(w); cpu[name].append(c)

    clocks = (('wall', wall),) if cuda else (('wall', wall), ('cpu', cpu))
    for clock, ts in clocks:
        for name, t in ts.items():
            print(f'{clock:>4} {name:>17}: median {statistics.median(t):.3f} s per epoch  (min {min(t):.3f}, max {max(t):.3f})')
    for clock, ts in clocks:
        for ref in hands:
            ratios = [a / b for a, b in zip(ts['Learner'], ts[ref])]
            over = (statistics.median(ts['Learner']) - statistics.median(ts[ref])) / len(dls.train) * 1e3
            print(f'{clock:>4} Learner / {ref}: median ratio {statistics.median(ratios):.3f}, ratio of minima '
                  f'{min(ts["Learner"]) / min(ts[ref]):.3f}; {over:+.2f} ms per training batch')
    if cuda: print(f'last Learner epoch: {learn.recorder.values[-1]}  (train loss, valid loss, accuracy)')


if __name__ == '__main__': main()
