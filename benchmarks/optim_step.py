"""Time one optimizer step of our AdamW against `torch.optim.AdamW` on the WRN-22 parameter set (9,658,458 parameters).

Candidates, each with its own copy of the same parameters and gradients:

* ours, foreach: `adamw_course.adamw.AdamW` if that module exists, else `adamw_course.adam.Adam(...,
  decoupled_weight_decay=True)` (the default, multi-tensor path);
* ours, per-tensor: the same with `foreach=False`;
* torch.optim.AdamW with `foreach=True` (the reference for the ratios), with `fused=True`, and with `foreach=False`;
* a textbook loop: one Python iteration per tensor, the formulas written out with temporaries.

All candidates are timed in the same process and interleaved step by step (in a rotating order), so background load
hits all of them alike. The table gives the median and the minimum over the repeats, and the ratio of medians to
torch's foreach step; the target line also gives the median of the per-round ratios. After timing, the script checks
that our foreach step and torch's produced the same parameters. Settings are the fast.ai post's (lr 3e-3, betas
(0.95, 0.99), weight decay 0.1).

Run: python benchmarks/optim_step.py [--device cpu|cuda] [--repeats 30] [--warmup 5] [--threads N]
"""
import argparse
import os
import statistics
import time

import torch

WRN22_N_PARAMS = 9_658_458
LR, BETAS, EPS, WD = 3e-3, (0.95, 0.99), 1e-8, 0.1


def wrn_shapes(depth: int = 22, widen: int = 6, num_classes: int = 10) -> list[tuple[int, ...]]:
    """Parameter shapes of a CIFAR wide ResNet (pre-activation basic blocks, bias-free convolutions, BatchNorm
    weight and bias, a 1x1 shortcut convolution where the shape changes, final BatchNorm and Linear)."""
    n_blocks = (depth - 4) // 6                               # 3 blocks per group for depth 22
    shapes, c_in = [(16, 3, 3, 3)], 16                        # stem: conv3x3 3 -> 16
    for width in (16 * widen, 32 * widen, 64 * widen):        # 96, 192, 384
        for _ in range(n_blocks):
            shapes += [(c_in,), (c_in,), (width, c_in, 3, 3), (width,), (width,), (width, width, 3, 3)]
            if c_in != width: shapes.append((width, c_in, 1, 1))
            c_in = width
    return shapes + [(c_in,), (c_in,), (num_classes, c_in), (num_classes,)]


def wrn22_param_shapes() -> tuple[list[tuple[int, ...]], str]:
    "Shapes from `adamw_course.models.wrn_22` if it exists, else built here; checked against 9,658,458 parameters."
    try:
        from adamw_course.models import wrn_22
        shapes, source = [tuple(p.shape) for p in wrn_22().parameters()], 'adamw_course.models.wrn_22'
    except ImportError:
        shapes, source = wrn_shapes(), 'shapes built in this script'
    total = sum(torch.Size(s).numel() for s in shapes)
    if total != WRN22_N_PARAMS: raise RuntimeError(f"WRN-22 parameter set has {total:,} parameters, expected {WRN22_N_PARAMS:,}")
    return shapes, source


def our_adamw():
    "Our AdamW class: `adamw_course.adamw.AdamW` once lesson 03 exists, else Adam with decoupled weight decay."
    try:
        from adamw_course.adamw import AdamW
        return 'adamw_course.adamw.AdamW', AdamW
    except ImportError:
        from adamw_course.adam import Adam
        return 'adamw_course.adam.Adam(decoupled_weight_decay=True)', lambda ps, **kw: Adam(ps, decoupled_weight_decay=True, **kw)


class TextbookAdamW:
    "AdamW as most tutorials write it: a Python loop over tensors, bias corrections applied to temporaries."
    def __init__(self, params, lr, betas, eps, weight_decay):
        self.params, self.lr, self.betas, self.eps, self.wd, self.t = list(params), lr, betas, eps, weight_decay, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        self.t += 1
        (b1, b2), t = self.betas, self.t
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            p.mul_(1 - self.lr * self.wd)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def make_params(shapes, device, seed=0):
    "Parameters and fixed gradients (the optimizers never change `.grad`), the same values for every candidate."
    gen = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=gen).mul_(0.05).to(device).requires_grad_()
        p.grad = torch.randn(s, generator=gen).mul_(1e-2).to(device)
        params.append(p)
    return params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    ap.add_argument('--repeats', type=int, default=30, help='timed steps per candidate')
    ap.add_argument('--warmup', type=int, default=5, help='untimed steps per candidate first')
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    args = ap.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA device found")
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    shapes, source = wrn22_param_shapes()
    ours_name, Ours = our_adamw()
    kw = dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    candidates = {
        'ours, foreach (default)': lambda ps: Ours(ps, **kw),
        'ours, per-tensor (foreach=False)': lambda ps: Ours(ps, foreach=False, **kw),
        'torch AdamW foreach': lambda ps: torch.optim.AdamW(ps, foreach=True, **kw),
        'torch AdamW fused': lambda ps: torch.optim.AdamW(ps, fused=True, **kw),
        'torch AdamW per-tensor (foreach=False)': lambda ps: torch.optim.AdamW(ps, foreach=False, **kw),
        'textbook loop': lambda ps: TextbookAdamW(ps, **kw),
    }
    opts, params = {}, {}
    for name, make in candidates.items():
        params[name] = make_params(shapes, device)
        try:
            opts[name] = make(params[name])
            opts[name].step()
        except RuntimeError as e:                             # e.g. fused not supported on this device/torch
            print(f"skipping {name}: {e}")
            opts.pop(name, None)

    names = list(opts)
    for _ in range(args.warmup):
        for name in names: opts[name].step()
    sync()
    times = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:     # rotate the order every round
            sync(); start = time.perf_counter()
            opts[name].step()
            sync(); times[name].append(time.perf_counter() - start)

    ref = 'torch AdamW foreach'
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"AdamW step on the WRN-22 parameter set: {sum(torch.Size(s).numel() for s in shapes):,} parameters in "
          f"{len(shapes)} tensors ({source})")
    cpu_info = f"{torch.get_num_threads()} threads" + (f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, 'getloadavg') else '')
    dev_info = torch.cuda.get_device_name(device) if device.type == 'cuda' else f"CPU, {cpu_info}"
    print(f"device: {dev_info}; torch {torch.__version__}; {args.warmup} warm-up + {args.repeats} timed steps each, "
          f"interleaved; ours = {ours_name}\n")
    print(f"{'candidate':42} {'median ms':>10} {'min ms':>9} {'vs torch foreach':>17}")
    for n in names:
        print(f"{n:42} {med[n] * 1e3:10.2f} {min(times[n]) * 1e3:9.2f} {med[n] / med[ref]:16.2f}x")

    ours = 'ours, foreach (default)'
    paired = statistics.median(a / b for a, b in zip(times[ours], times[ref]))
    target = 1.10 if device.type == 'cpu' else 1.00
    verdict = 'met' if med[ours] / med[ref] <= target else 'MISSED'
    print(f"\nours / torch foreach: {med[ours] / med[ref]:.2f}x (ratio of medians), {paired:.2f}x (median of per-round "
          f"ratios); target <= {target:.2f}x on {device.type}: {verdict}")
    if 'torch AdamW fused' in med: print(f"ours / torch fused: {med[ours] / med['torch AdamW fused']:.2f}x")
    same = all(torch.equal(a, b) for a, b in zip(params[ours], params[ref]))
    print(f"same parameters as torch foreach after {args.warmup + args.repeats + 1} steps: {same}")


if __name__ == '__main__':
    main()
