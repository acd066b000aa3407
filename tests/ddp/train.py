"""Launched by tests/test_ddp.py as `python -m torch.distributed.run --nproc_per_node 2 tests/ddp/train.py MODE OUT`
(gloo on the CPU). MODE 'die': fit with a checkpoint after every epoch and kill both ranks with `os._exit` in the
middle of epoch 2. MODE 'main': an lr_find, an uninterrupted fit, and a fit resumed from the killed run's checkpoint;
each rank writes what it saw to OUT/rank{r}.pt for the test to compare with one process."""
import os, sys
from pathlib import Path

import torch
from torch import nn

from adamw_course.callback import Callback, ProgressCB
from adamw_course.checkpoint import CheckpointCB
from adamw_course.data import DataLoaders, DeviceLoader
from adamw_course.distributed import distributed_ctx, init_distributed, rank_and_world
from adamw_course.learner import Learner

N_EPOCHS, LR, DIE_EPOCH, DIE_BATCH = 3, 3e-3, 2, 1


def make_learner(bs: int) -> Learner:
    "An MLP (no BatchNorm) with dropout on shuffled, augmented synthetic images: 192 to train, 45 to validate (23 + 22 on 2 ranks)."
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (237, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    dls = DataLoaders(DeviceLoader(x[:192], y[:192], bs, shuffle=True, augment=True, drop_last=True, device='cpu', seed=0),
                      DeviceLoader(x[192:], y[192:], 2 * bs, device='cpu'))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 2))
    return Learner(model, dls, mixed_precision='fp32')


class Die(Callback):
    "Kill the process, without any cleanup, after the step of batch DIE_BATCH of epoch DIE_EPOCH."
    def after_step(self):
        if self.learn.epoch == DIE_EPOCH and self.learn.iter == DIE_BATCH: os._exit(3)


if __name__ == '__main__':
    mode, out = sys.argv[1], Path(sys.argv[2])
    init_distributed()
    rank, world = rank_and_world()
    if mode == 'die':
        learn = make_learner(32)
        with distributed_ctx(learn): learn.fit(N_EPOCHS, LR, cbs=[CheckpointCB(out/'ddp.pt'), Die()])
    res = {'world': world}
    learn = make_learner(32)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    gen = learn.dls.train.generator.get_state()
    with distributed_ctx(learn):
        lf = learn.lr_find(num_it=30, end_lr=1.)
        res['lr_find'] = dict(lrs=lf.lrs, losses=lf.losses, valley=lf.valley, restored=all(
            torch.equal(before[k], v) for k, v in learn.model.module.state_dict().items()) and torch.equal(
            gen, learn.dls.train.state_dict()['generator']))
        learn.fit(N_EPOCHS, LR)
        res['shows_progress'] = any(isinstance(cb, ProgressCB) for cb in learn.cbs)
        learn.save(out/f'saved_by_rank{rank}.pt')      # only rank 0 writes
    res.update(values=learn.recorder.values, losses=learn.recorder.losses, model=learn.model.state_dict())
    again = make_learner(32)
    with distributed_ctx(again):
        again.load(out/'ddp.pt')
        res['resumed_from'] = again.epochs_done
        again.fit(N_EPOCHS, LR, start_epoch=again.epochs_done)
    res.update(resumed_values=again.recorder.values, resumed_model=again.model.state_dict())
    torch.save(res, out/f'rank{rank}.pt')
    torch.distributed.destroy_process_group()
