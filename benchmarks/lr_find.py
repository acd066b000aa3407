"""What does `lr_find` cost, compared with the training it does?

The budget (issue 4): `lr_find(num_it=n)` may cost at most 1.1x the time of n plain training steps plus one save and
restore of the model and optimizer. The reference is written with torch only, in the same process, on the same model,
optimizer (torch's own AdamW), batches and learning rates:

    sd, osd = deepcopy(model.state_dict()), deepcopy(opt.state_dict())
    for each of the n lrs: set lr; zero_grad; loss = cross_entropy(model(x), y); backward; step
    model.load_state_dict(sd); opt.load_state_dict(osd)

`lr_find` runs the same n steps (end_lr is kept small and diverge_th infinite, so it never stops early) and on top
records `loss.item()`, smooths it, saves and restores the RNGs and computes the four suggestions. torch-lr-finder's
`range_test` + `reset()` is timed too, for reference. The three are interleaved, repeated, and compared by median.

    python benchmarks/lr_find.py                     # small_cnn, bs 64, 100 its, on the GPU if there is one
    python benchmarks/lr_find.py --device cpu --threads 2 --reps 9

On the CPU it uses one torch thread unless told otherwise: on a shared machine, two threads per process fight over
the cores and the timings become noise (we measured a "plain loop" 5x slower than the very same steps inside lr_find).
"""
import argparse, contextlib, copy, io, math, statistics, time, warnings

import torch
import torch.nn.functional as F

from adamw_course.checkpoint import get_rng_state, set_rng_state
from adamw_course.lr_finder import LRFinderWarning, lr_find, snapshot_model, snapshot_optimizer
from adamw_course.models import small_cnn

try: import torch_lr_finder
except ImportError: torch_lr_finder = None

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--num-it', type=int, default=100)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--reps', type=int, default=7)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: 1 on the CPU)')
    args = p.parse_args()
    if args.threads or args.device == 'cpu': torch.set_num_threads(args.threads or 1)
    warnings.simplefilter('ignore', LRFinderWarning)   # random data: the suggestions are meaningless, and not timed apart
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = small_cnn().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.bs, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (args.bs,), generator=g).to(device))
               for _ in range(25)]
    for xb, yb in batches[:3]:                       # give the optimizer some state to save and restore
        opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
    n, start_lr, end_lr = args.num_it, 1e-7, 1e-3
    lrs = [start_lr * (end_lr / start_lr) ** (i / (n - 1)) for i in range(n)]

    def plain():
        sd, osd = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        model.train()
        for i, lr in enumerate(lrs):
            xb, yb = batches[i % len(batches)]
            for grp in opt.param_groups: grp['lr'] = lr
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        model.load_state_dict(sd); opt.load_state_dict(osd)

    def ours():
        lr_find(model, F.cross_entropy, opt, batches, start_lr=start_lr, end_lr=end_lr, num_it=n, diverge_th=math.inf)

    def theirs():
        finder = torch_lr_finder.LRFinder(model, opt, F.cross_entropy, device=device)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder.range_test(torch_lr_finder.TrainDataLoaderIter(batches), start_lr=start_lr, end_lr=end_lr,
                              num_iter=n, diverge_th=math.inf)
        finder.reset()
        for grp in opt.param_groups: grp.pop('initial_lr', None)   # its scheduler's mark; would block the next run

    def save_restore_torch():
        sd, osd = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        model.load_state_dict(sd); opt.load_state_dict(osd)

    def save_restore_ours():
        restores, rngs = [snapshot_model(model), snapshot_optimizer(opt)], get_rng_state(batches)
        for r in restores: r()
        set_rng_state(rngs, batches)

    fns = {'plain loop + state_dict save/restore': plain, 'adamw_course lr_find': ours}
    if torch_lr_finder is not None: fns['torch-lr-finder range_test + reset'] = theirs
    fns_io = {'torch state_dict save/restore only': save_restore_torch, 'lr_find snapshot/restore only': save_restore_ours}
    times = {k: [] for k in [*fns, *fns_io]}
    for fn in [*fns.values(), *fns_io.values()]: fn()          # warm up
    for rep in range(args.reps):
        names = list(fns)
        names = names[rep % len(names):] + names[:rep % len(names)]    # rotate the order: no one always goes first
        for name in names + list(fns_io):
            f = fns.get(name) or fns_io[name]
            sync(device); t0 = time.perf_counter(); f(); sync(device)
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med['plain loop + state_dict save/restore']
    print(f'lr_find benchmark: small_cnn, bs {args.bs}, num_it {n}, device {device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} CPU threads, {args.reps} reps (median)')
    for k in fns: print(f'  {k:40s} {med[k] * 1e3:9.1f} ms   x{med[k] / base:.3f}   (fastest rep {min(times[k]) * 1e3:.1f} ms)')
    for k in fns_io: print(f'  {k:40s} {med[k] * 1e3:9.2f} ms')
    ratio = med['adamw_course lr_find'] / base
    print(f'lr_find / (plain steps + save/restore) = {ratio:.3f}  (budget 1.10: {"PASS" if ratio <= 1.10 else "FAIL"})')

if __name__ == '__main__': main()
