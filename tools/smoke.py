"""Smoke test for an installed wheel: import every module, train one tiny epoch with AdamW, the LR finder and 1cycle,
and check that nothing pulled in nbdev. Run it from a folder outside the repository (tools/check_wheel.sh does)."""
import importlib, sys, time

import adamw_course

start = time.time()
mods = ['sgd', 'adam', 'adamw', 'data', 'models', 'learner', 'lr_finder', 'schedule']
for m in mods: importlib.import_module(f'adamw_course.{m}')
assert 'adamw_course' not in sys.path[0], sys.path[0]
where = adamw_course.__file__
assert 'site-packages' in where, f"adamw_course came from {where}, not from the installed wheel"

import torch
from adamw_course.data import cifar10
from adamw_course.learner import Learner
from adamw_course.models import small_cnn
from adamw_course.schedule import one_cycle_post

torch.manual_seed(0)
dls = cifar10(n_per_class=20, n_test_per_class=10, bs=32)
learn = Learner(small_cnn(), dls)
lr = learn.lr_find(num_it=20).valley or 1e-3
learn.fit_sched(1, one_cycle_post(lr), wd=0.1)
acc = learn.validate()['accuracy']
assert 0 <= acc <= 1
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('nbdev', 'execnb'))
assert not bad, f"the installed package imported {bad} at runtime"
print(f"wheel smoke test: adamw_course {adamw_course.__version__} from {where}; one epoch on 200 images, "
      f"accuracy {acc:.1%}; no nbdev import; {time.time() - start:.1f} s")
