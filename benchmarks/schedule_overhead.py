"""Per-batch cost of `adamw_course.schedule.ParamScheduler` against torch's own `OneCycleLR`, in the same process.

Both schedulers drive an AdamW with 1 and with 10 param groups through the same 1cycle (torch's defaults), one
`step()` per batch. The optimizer itself is not stepped: only the scheduler's own work is timed. The last column puts
that cost next to one AdamW step on a small CNN's parameters, to show whether it matters at all.

Run: python benchmarks/schedule_overhead.py
"""
import time
import warnings

import torch
from torch import nn

from adamw_course.schedule import ParamScheduler, one_cycle_torch


def make_opt(n_groups: int) -> torch.optim.Optimizer:
    return torch.optim.AdamW([{'params': [torch.zeros(4, requires_grad=True)]} for _ in range(n_groups)], lr=1e-3)


def per_step(make_sched, n_groups: int, total: int = 5000, repeats: int = 5) -> float:
    "Best-of-`repeats` seconds per `step()` over a `total`-step cycle."
    best = float('inf')
    for _ in range(repeats):
        opt = make_opt(n_groups)
        sched = make_sched(opt, total)
        start = time.perf_counter()
        for _ in range(total - 1): sched.step()
        best = min(best, (time.perf_counter() - start) / (total - 1))
    return best


def adamw_step_time(repeats: int = 50) -> float:
    "Seconds for one AdamW step over a small CNN's parameters (about a million), for scale."
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 64, 3), nn.Conv2d(64, 128, 3), nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 3, 32, 32)).sum().backward()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.step()
    start = time.perf_counter()
    for _ in range(repeats): opt.step()
    return (time.perf_counter() - start) / repeats


def main():
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')   # OneCycleLR warns that optimizer.step() was not called
    ours = lambda opt, T: ParamScheduler(opt, one_cycle_torch(1e-3), T)
    theirs = lambda opt, T: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=T)
    step = adamw_step_time()
    print(f"{'param groups':>12} {'ParamScheduler':>15} {'OneCycleLR':>12} {'ratio':>7} {'vs one AdamW step':>18}")
    for n_groups in (1, 10):
        t_ours, t_torch = per_step(ours, n_groups), per_step(theirs, n_groups)
        print(f"{n_groups:>12} {t_ours * 1e6:>12.1f} us {t_torch * 1e6:>9.1f} us {t_ours / t_torch:>7.2f} {t_ours / step:>17.1%}")


if __name__ == '__main__': main()
