"""Exact resume across processes.

A child process trains with a checkpoint after every epoch and is killed with `os._exit` in the middle of epoch 2,
right after an optimizer step (no cleanup, like a preempted machine). This process builds a new Learner, loads the
last checkpoint and finishes the fit. It must end with exactly the weights, optimizer state and recorded losses of a
run that was never interrupted. Lesson 05e (nbs/05e_checkpoints.ipynb) tests the same within one process; this test adds
a fresh interpreter, so nothing can leak through memory."""
import os, subprocess, sys
from pathlib import Path

import torch
import torch.nn as nn

from adamw_course.data import DataLoaders, DeviceLoader
from adamw_course.callback import Callback
from adamw_course.checkpoint import CheckpointCB
from adamw_course.learner import Learner

N_EPOCHS, CRASH_EPOCH, CRASH_BATCH = 4, 2, 1


def make_learner(model_seed=0):
    "A tiny CNN with dropout and batch norm on shuffled, augmented synthetic images; one thread, so runs are bitwise repeatable."
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    dls = DataLoaders(DeviceLoader(x[:64], y[:64], 16, shuffle=True, augment=True, drop_last=True, device='cpu', seed=0),
                      DeviceLoader(x[64:], y[64:], 32, device='cpu'))
    torch.manual_seed(model_seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 2))
    return Learner(model, dls)


class Die(Callback):
    "Kill the process, without any cleanup, after the step of batch CRASH_BATCH of epoch CRASH_EPOCH."
    def after_step(self):
        if self.learn.epoch == CRASH_EPOCH and self.learn.iter == CRASH_BATCH: os._exit(3)


def crashing_run(path):
    "Run in the child process: fit with checkpoints until the crash."
    learn = make_learner()
    with learn.no_bar(): learn.fit(N_EPOCHS, lr=1e-2, cbs=[CheckpointCB(path), Die()])


def test_resume_in_new_process_is_exact(tmp_path):
    path = tmp_path / 'ckpt.pt'
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_learner_resume as t; t.crashing_run({str(path)!r})"
    child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 3, child.stderr                      # it died where we wanted
    assert torch.load(path, weights_only=True)['epochs_done'] == CRASH_EPOCH

    ref = make_learner()
    with ref.no_bar(): ref.fit(N_EPOCHS, lr=1e-2)

    resumed = make_learner(model_seed=1).load(path)                 # other initial weights: load must replace them
    assert resumed.epochs_done == CRASH_EPOCH
    with resumed.no_bar(): resumed.fit(N_EPOCHS, lr=1e-2, start_epoch=resumed.epochs_done)

    s_ref, s_res = ref.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(s_ref[k], s_res[k]) for k in s_ref)
    o_ref, o_res = ref.opt.state_dict()['state'], resumed.opt.state_dict()['state']
    assert all(torch.equal(o_ref[i][k], o_res[i][k]) for i in o_ref for k in o_ref[i])
    assert resumed.recorder.losses == ref.recorder.losses
    assert resumed.recorder.values == ref.recorder.values
