"""A small, real run of the course's main comparison: AdamW against Adam with L2 regularization, both with the post's
1cycle recipe, on a slice of CIFAR-10, printed as a table.

It uses the offline copy `shared/data/cifar10-jpeg.tgz` when it can find one (or `ADAMW_COURSE_CIFAR10`), and otherwise
downloads the official CIFAR-10 through torchvision. On a 2-core CPU the default settings take a few minutes; on a
GPU pass `--n-per-class 5000 --model wrn_22 --epochs 30` for the post's full setting (about 3 minutes per run on an H200).

    python examples/cifar10_demo.py [--n-per-class 500] [--epochs 6] [--seeds 1]
"""
import argparse, statistics, time

import torch

from adamw_course.adam import Adam
from adamw_course.adamw import AdamW, param_groups
from adamw_course.data import cifar10
from adamw_course.learner import Learner
from adamw_course.models import small_cnn, wrn_22
from adamw_course.schedule import one_cycle_post

# name -> (optimizer built on the model's param groups, lr_max, wd). Each gets its own tuned wd: L2 and decoupled
# decay live on scales orders of magnitude apart (lesson 03).
RUNS = {
    'AdamW (wd 0.1, decoupled)': (lambda groups, lr: AdamW(groups, lr=lr, betas=(0.95, 0.99)), 3e-3, 0.1),
    'Adam + L2 (wd 1e-4)':       (lambda groups, lr: Adam(groups, lr=lr, betas=(0.95, 0.99)), 3e-3, 1e-4),
}


def run(name, dls, args, seed):
    "Train one model with the optimizer `name` and return (accuracy, seconds)"
    make_opt, lr, wd = RUNS[name]
    torch.manual_seed(seed)
    model = (wrn_22 if args.model == 'wrn_22' else small_cnn)()
    learn = Learner(model, dls, opt_func=lambda params, lr: make_opt(param_groups(model, wd), lr))
    print(f"{name}, seed {seed}:")
    start = time.time()
    learn.fit_sched(args.epochs, one_cycle_post(lr))
    return learn.validate()['accuracy'], time.time() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-per-class', type=int, default=500, help='training images per class (5000 = the full set)')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--model', choices=['small_cnn', 'wrn_22'], default='small_cnn')
    p.add_argument('--data', default=None, help='CIFAR-10 source: an ImageFolder .tgz or folder, or "torchvision"')
    args = p.parse_args(argv)
    n_test = None if args.n_per_class >= 5000 else max(100, args.n_per_class // 2)
    dls = cifar10(args.data, n_per_class=None if args.n_per_class >= 5000 else args.n_per_class,
                  n_test_per_class=n_test, bs=128)
    print(f"CIFAR-10: {len(dls.train.x):,} training and {len(dls.valid.x):,} test images on {dls.device}; "
          f"{args.model}, {args.epochs} epochs of the post's 1cycle (lr 3e-3, div 10, pct 0.075), betas (0.95, 0.99)\n")
    rows = []
    for name in RUNS:
        accs, secs = zip(*(run(name, dls, args, seed) for seed in range(args.seeds)))
        sd = f"{statistics.stdev(accs):.2%}" if len(accs) > 1 else '-'
        rows.append((name, f"{statistics.mean(accs):.2%}", sd, f"{statistics.mean(secs):.1f}"))
    header = ('optimizer', f'accuracy (mean of {args.seeds})', 'std', 'seconds per run')
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    print('\n' + '| ' + ' | '.join(h.ljust(w) for h, w in zip(header, widths)) + ' |')
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for r in rows: print('| ' + ' | '.join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) + ' |')
    print("\nOn a slice this small and this short, compare the gap with the std before reading anything into it: the "
          "post's claim (AdamW 5.66% vs Adam 6.06% test error) is a mean over 5 full 30-epoch WRN-22 runs.")


if __name__ == '__main__': main()
