"""Training throughput, in samples per second, of 1 process against 2 ranks under DDP (gloo, the CPU).

    python benchmarks/ddp_throughput.py            # runs both and prints a table
    python benchmarks/ddp_throughput.py --worker   # one timing, as started by the line above (or by torchrun)

Each run trains a small CNN on synthetic 32x32 images for a few warm-up batches, then times `--batches` more. The
global batch is the same (64) in both: 1 process x 64, or 2 ranks x 32. On a machine with few cores, the ranks share
them: the figure shows the cost of the gradient all-reduce and of the shared cores, not what GPUs would give."""
import argparse, os, subprocess, sys, time

import torch
from torch import nn

from adamw_course.callback import Callback
from adamw_course.data import DataLoaders, DeviceLoader
from adamw_course.distributed import distributed_ctx, init_distributed, is_main_process, rank_and_world
from adamw_course.learner import Learner


def worker(batches: int, threads: int):
    init_distributed()
    torch.set_num_threads(threads)
    world = rank_and_world()[1]
    bs = 64 // world
    g = torch.Generator().manual_seed(0)
    n = 64 * (batches + 3)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    dls = DataLoaders(DeviceLoader(x, y, bs, shuffle=True, drop_last=True, device='cpu', seed=0),
                      DeviceLoader(x[:64], y[:64], bs, device='cpu'))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    learn = Learner(model, dls, metrics=())
    class Clock(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.iter == 3:
                if torch.distributed.is_initialized(): torch.distributed.barrier()
                self.t0 = time.perf_counter()
        def after_train(self): self.dt = time.perf_counter() - self.t0
    clock = Clock()
    with distributed_ctx(learn), learn.no_bar(): learn.fit(1, 1e-3, cbs=[clock])
    if is_main_process(): print(f'RESULT {world} {64 * batches / clock.dt:.1f}', flush=True)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--worker', action='store_true'); p.add_argument('--batches', type=int, default=30)
    a = p.parse_args()
    if a.worker: worker(a.batches, int(os.environ.get('THREADS', 1)))
    else:
        cores = os.cpu_count()
        print(f'{cores} CPU cores; global batch 64; {a.batches} timed batches')
        print('ranks  threads/rank  samples/s')
        for ranks, threads in ((1, 1), (1, 2), (2, 1)):
            cmd = [sys.executable, __file__, '--worker', '--batches', str(a.batches)]
            if ranks > 1: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
                                 str(ranks), *cmd[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'THREADS': str(threads),
                                 'OMP_NUM_THREADS': str(threads), 'CUDA_VISIBLE_DEVICES': ''})
            res = [l.split() for l in out.stdout.splitlines() if l.startswith('RESULT')]
            print(f'{ranks:<6} {threads:<13} {res[0][2] if res else "failed: " + out.stderr[-300:]}')
