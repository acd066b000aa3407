"""The project's GPU check: one script, at most 8 minutes on one GPU, that measures what only a GPU can show.

Sections, in order, each timed; a failing section is recorded (with its exception's last line) and the next one runs;
a section that would pass the time budget is skipped:

1. env: versions, the device, its compute capability and the autocast dtype the Learner picks ('auto').
2. the benchmarks in benchmarks/ (optim_step, learner_epoch, lr_find), each a subprocess with a timeout; their
   ratio lines (against the torch reference measured in the same process) go into the report.
3. syncs: host-device synchronizations per training batch through the Learner's default callbacks.
4. recipe: a short run of the post's recipe (WRN-22, AdamW, its 1cycle) on the offline CIFAR-10 copy: test accuracy,
   plain and with TTA, and seconds per epoch.
5. notebooks: the lessons with a SIZE switch, run as a reader would (tools/colab_check.py) at SIZE='smoke'.

At the end it writes OUT/report.json and OUT/report.md (each atomically), prints report.md, and exits 1 if a section
failed, else 0. Without a CUDA device it refuses to run (exit 2) unless given --dry-run, which runs every section on
the CPU at the smallest size, so that CI keeps the script working.

    python3 tools/gpu_check.py --dry-run --out /tmp/gpucheck_dry          # on a CPU, under 90 s
    python3 tools/gpu_check.py --data data/cifar10-jpeg.tgz --out results/gpu   # on the GPU machine

On the GPU machine the CIFAR-10 archive must travel with the working tree: copy shared/data/cifar10-jpeg.tgz into the
ignored folder data/ and name `data` in the run's carry list. Nothing is ever downloaded.
"""
import time
_T0 = time.monotonic()          # the budget counts from here, imports included
import argparse, contextlib, datetime, json, os, platform, re, statistics, subprocess, sys, tempfile, traceback, warnings
from collections import Counter
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]
SYNC_METHODS = ('item', 'tolist', 'cpu')
# Calls from these files read tensors that stay on the CPU in a GPU run too (the optimizer's step counters live on
# the CPU, as torch's do), so on a CPU dry run they are listed but not counted as syncs.
HOST_SIDE = {'adamw_course/adam.py': "the optimizer's step counters, which live on the CPU (as torch's do)"}
CALIBRATION = ("the data README's calibration: on this JPEG copy of CIFAR-10, 90.7% test accuracy corresponds to the "
               "post's 94% for the full 30-epoch recipe; a 5-epoch run is expected to be well below it")
REPORT_RESERVE_S = 5.0          # kept free at the end of the budget for writing the report


# ---------------------------------------------------------------- counting host-device syncs
def short_path(filename: str) -> str:
    "`filename` from its package folder on (`adamw_course/adam.py`, `torch/...`), wherever the package is installed."
    parts = Path(filename).parts
    for anchor in ('adamw_course', 'site-packages', 'dist-packages'):
        if anchor in parts[:-1]:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return '/'.join(parts[i:] if anchor == 'adamw_course' else parts[i + 1:])
    try: return Path(filename).resolve().relative_to(REPO).as_posix()
    except (ValueError, OSError): return Path(filename).as_posix()


def _where(frame) -> str:
    "'path:line function' of `frame` (path as `short_path` gives it)."
    return f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"


class HostReadCounter:
    """Context manager for CPU runs: counts the calls of `torch.Tensor.item`, `.tolist` and `.cpu` (each would wait
    for the GPU in a GPU run), patching them on `torch.Tensor` with wrappers that record the caller, then call the
    original (`methods`: which ones, by default `SYNC_METHODS`). `calls` is a list of `(method, where)`."""
    def __init__(self, methods=SYNC_METHODS): self.calls, self._stack, self.methods = [], None, tuple(methods)

    def _wrap(self, name):
        orig = getattr(torch.Tensor, name)
        def counted(t, *args, **kwargs):
            self.calls.append((name, _where(sys._getframe(1))))
            return orig(t, *args, **kwargs)
        return counted

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        for name in self.methods: self._stack.enter_context(mock.patch.object(torch.Tensor, name, self._wrap(name)))
        return self

    def __exit__(self, *exc): self._stack.close()

    def host_side(self, where: str) -> bool:
        "Whether the call at `where` reads a tensor that stays on the CPU in a GPU run too."
        return any(where.startswith(f) for f in HOST_SIDE)


class CudaSyncCounter:
    """Context manager for CUDA runs: `torch.cuda.set_sync_debug_mode('warn')` and every warning recorded; `calls`
    lists `(message start, where)` for each synchronizing operation."""
    def __init__(self): self.calls, self._cw, self._log = [], None, None

    def __enter__(self):
        self._cw = warnings.catch_warnings(record=True)
        self._log = self._cw.__enter__()
        warnings.simplefilter('always')           # the default filter would show a repeated warning only once
        torch.cuda.set_sync_debug_mode('warn')
        return self

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(0)
        self._cw.__exit__(*exc)

    def poll(self):
        "Move the sync warnings recorded so far into `calls`."
        for w in self._log:
            msg = str(w.message)
            if 'synchroniz' in msg.lower():
                self.calls.append((msg.splitlines()[0][:60], f"{short_path(w.filename)}:{w.lineno}"))
        self._log.clear()

    def host_side(self, where: str) -> bool: return False


def sync_counter(device: torch.device):
    "The counter for `device`: CUDA's sync debug mode on a GPU, counted `.item()`/`.tolist()`/`.cpu()` calls on a CPU."
    return CudaSyncCounter() if device.type == 'cuda' else HostReadCounter()


# ---------------------------------------------------------------- the report
def exit_code(sections: list) -> int:
    "1 if any section failed, else 0 (skipped sections do not fail the check)."
    return int(any(s['status'] == 'failed' for s in sections))


def _atomic_write(path: Path, text: str):
    "Write `text` to `path` through a temporary file in the same folder and `os.replace`."
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally: tmp.unlink(missing_ok=True)


def render_md(report: dict) -> str:
    "report.md: a header (device, versions, date, dry run or not) and one table row per section."
    env = report.get('env', {})
    lines = [f"# GPU check{' (dry run on the CPU)' if report['dry_run'] else ''}", "",
             f"- device: {env.get('device_name', '?')}" + (f" (compute capability {env['capability']})" if env.get('capability') else ''),
             f"- versions: torch {env.get('torch', '?')}, torchvision {env.get('torchvision', '?')}, "
             f"adamw_course {env.get('adamw_course', '?')}, python {env.get('python', '?')}",
             f"- date: {report['started']} ({report['total_s']:.0f} s of a {report['budget_s']:.0f} s budget)",
             f"- dry run: {'yes (every section at its smallest size, on the CPU)' if report['dry_run'] else 'no'}",
             f"- exit code: {report['exit_code']}", "",
             "| section | status | s | key figures |", "|---|---|---:|---|"]
    for s in report['sections']:
        fig = s['summary'] if s['status'] == 'ok' else (s.get('error') or s['summary'])
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {fig.replace('|', chr(92) + '|')} |")
    return '\n'.join(lines) + '\n'


def write_report(out: Path, report: dict) -> tuple[Path, Path]:
    "Write `out`/report.json and `out`/report.md, each atomically (temporary file + `os.replace`); returns both paths."
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    text_json = json.dumps(report, indent=1, default=str) + '\n'    # both rendered before either file is touched
    text_md = render_md(report)
    _atomic_write(out/'report.json', text_json)
    _atomic_write(out/'report.md', text_md)
    return out/'report.json', out/'report.md'


# ---------------------------------------------------------------- running sections
class Budget:
    "The wall-clock budget: `left()` seconds remain of `total_s`, keeping `REPORT_RESERVE_S` for the report."
    def __init__(self, total_s: float, start: float | None = None):
        self.total_s, self.start = total_s, time.monotonic() if start is None else start
    def elapsed(self) -> float: return time.monotonic() - self.start
    def left(self) -> float: return self.total_s - REPORT_RESERVE_S - self.elapsed()


def last_line(e: BaseException) -> str:
    "The exception's type and the last line of its message, as a traceback ends."
    lines = traceback.format_exception_only(type(e), e)[-1].strip().splitlines() or [type(e).__name__]
    return lines[0] if len(lines) == 1 else f"{type(e).__name__}: {lines[-1].strip()}"


class Skip(Exception): "Raise in a section to record it as skipped, with the message as the reason."


def run_section(name: str, fn, budget: Budget, estimate_s: float) -> dict:
    "Run `fn()` -> `(summary, details)` as section `name`, timed; a failure or a budget skip is recorded, never raised."
    rec = dict(name=name, status='ok', seconds=0.0, summary='', details={}, error=None)
    if estimate_s > budget.left():
        rec.update(status='skipped', summary=f"needs about {estimate_s:.0f} s, {max(budget.left(), 0):.0f} s "
                                             f"of the budget left")
        return rec
    start = time.monotonic()
    try: rec['summary'], rec['details'] = fn()
    except Skip as e: rec.update(status='skipped', summary=str(e))
    except Exception as e:
        rec.update(status='failed', error=last_line(e), summary=last_line(e))
        rec['details']['traceback'] = traceback.format_exc()
    rec['seconds'] = round(time.monotonic() - start, 2)
    return rec


def _sync(device):
    "Wait for the GPU's queued work (nothing to wait for on a CPU)."
    if device.type == 'cuda': torch.cuda.synchronize(device)


def deadline_cb(budget: Budget):
    "A callback that stops `fit` when the budget runs out (the section then fails, saying so)."
    from adamw_course.callback import Callback, CancelFitException
    class Deadline(Callback):
        order, hit = 100, False
        def after_batch(self):
            if budget.left() < 0:
                self.hit = True
                raise CancelFitException()
    return Deadline()


def resolve_data(arg: str | None) -> Path | None:
    "The CIFAR-10 copy: `--data`, else `$ADAMW_COURSE_CIFAR10`, else `find_cifar10()`; None if there is none."
    from adamw_course.data import ENV_VAR, find_cifar10
    if arg:
        path = Path(arg).expanduser()
        if not path.exists(): raise SystemExit(f"--data {arg}: no such file or folder; point it at the CIFAR-10 archive.")
        return path.resolve()
    if os.environ.get(ENV_VAR): return Path(os.environ[ENV_VAR]).expanduser().resolve()
    found = find_cifar10(REPO)
    return found.resolve() if found else None


# ---------------------------------------------------------------- 1. env
def section_env(device: torch.device) -> tuple[str, dict]:
    "Versions, the device and its compute capability, and the autocast dtype that mixed_precision='auto' picks there."
    import torchvision, adamw_course
    from adamw_course.callback import autocast_dtype
    cuda = device.type == 'cuda'
    d = dict(torch=torch.__version__, torchvision=torchvision.__version__, adamw_course=adamw_course.__version__,
             python=platform.python_version(), cuda_available=torch.cuda.is_available(), device=str(device),
             device_name=torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()})",
             capability='.'.join(map(str, torch.cuda.get_device_capability(device))) if cuda else None,
             cuda_version=torch.version.cuda, cudnn=torch.backends.cudnn.version() if cuda else None,
             autocast_auto=str(autocast_dtype('auto', device)), torch_threads=torch.get_num_threads(),
             cpu_count=os.cpu_count(), adamw_course_path=str(Path(adamw_course.__file__).parent))
    try: d['git'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                                   timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError): d['git'] = None
    summary = (f"{d['device_name']}" + (f", cc {d['capability']}" if cuda else '') +
               f"; autocast 'auto' -> {d['autocast_auto']}; CUDA available: {d['cuda_available']}")
    if not Path(adamw_course.__file__).resolve().is_relative_to(REPO):
        summary += f"; adamw_course imported from {d['adamw_course_path']}, not from this checkout"
    return summary, d


# ---------------------------------------------------------------- 2. benchmarks
RATIO_LINE = re.compile(r'\d\.\d+x\b|\bx\d+\.\d+|ratio|=\s*\d+\.\d+|same parameters')

def ratio_lines(stdout: str) -> list[str]:
    "The lines of a benchmark's output that carry ratios (or its parity verdict)."
    return [l.strip() for l in stdout.splitlines() if RATIO_LINE.search(l)]


def bench_summary(name: str, stdout: str) -> str:
    "The key figures of a benchmark's output, in one line."
    pick = {'optim_step': r'^(ours / torch.*|same parameters.*)$',
            'learner_epoch': r'^\s*(wall|cpu) Learner / .*$',
            'lr_find': r'^lr_find / .*$'}[name]
    found = [m.group(0).strip() for m in re.finditer(pick, stdout, re.M)]
    if name == 'learner_epoch':   # keep the ratios and the per-batch cost, drop the minima
        found = [re.sub(r', ratio of minima [\d.]+', '', f) for f in found]
    return '; '.join(found) or '; '.join(ratio_lines(stdout)[-2:]) or '(no ratio line found)'


def bench_args(name: str, dry: bool) -> tuple[list[str], float]:
    "Command-line options of benchmark `name` and its timeout (s): the smallest accepted on a dry run, GPU-sized otherwise."
    if dry:
        return {'optim_step': (['--device', 'cpu', '--repeats', '1', '--warmup', '0', '--threads', '1'], 120),
                'learner_epoch': (['--device', 'cpu', '--repeats', '1', '--batches', '1', '--n-per-class', '20',
                                   '--threads', '1'], 150),
                'lr_find': (['--device', 'cpu', '--num-it', '12', '--bs', '8', '--reps', '1', '--threads', '1'], 120)}[name]
    # GPU: the scripts' default (post-sized) settings. Measured cost per run on one H200 is unknown yet; estimated:
    # optim_step ~20 s (100 steps of 6 candidates), learner_epoch ~2-3 min (12 full WRN-22 epochs, 3 warm-up + 3 x 3),
    # lr_find ~20 s; together about 4 minutes at most.
    return {'optim_step': (['--device', 'cuda', '--repeats', '100', '--warmup', '10'], 90),
            'learner_epoch': (['--device', 'cuda', '--repeats', '3'], 180),
            'lr_find': (['--device', 'cuda', '--reps', '7'], 90)}[name]


def section_bench(name: str, dry: bool, data: Path | None, budget: Budget) -> tuple[str, dict]:
    "Run benchmarks/`name`.py as a subprocess with a timeout (within the budget) and keep its ratio lines."
    from adamw_course.data import ENV_VAR
    args, timeout = bench_args(name, dry)
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONUNBUFFERED': '1'}
    if name == 'learner_epoch':
        if data is None:
            if dry: raise Skip("no offline CIFAR-10 copy (benchmarks/learner_epoch.py has no synthetic-data option)")
            raise RuntimeError("no offline CIFAR-10 copy: pass --data (see this script's docstring); nothing is downloaded")
        env[ENV_VAR] = str(data)                      # the benchmark reads CIFAR-10 from here, never downloads
    if dry: env['OMP_NUM_THREADS'] = '1'
    timeout = min(timeout, budget.left())
    cmd = [sys.executable, f'benchmarks/{name}.py', *args]
    try: p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd[1:])}; last output: "
                           f"{(out.strip().splitlines() or ['(none)'])[-1]}") from None
    d = dict(command=' '.join(['python3', *cmd[1:]]), returncode=p.returncode, stdout=p.stdout,
             stderr_tail=p.stderr[-3000:], ratio_lines=ratio_lines(p.stdout))
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ['(no output)'])[-1]
        raise RuntimeError(f"{name}.py exited with {p.returncode}: {err}")
    return bench_summary(name, p.stdout), d


# ---------------------------------------------------------------- 3. syncs per training batch
def phase_marks(counter):
    "A callback that notes how many syncs the counter had seen at each phase boundary, and counts training batches."
    from adamw_course.callback import Callback
    class PhaseMarks(Callback):
        order = 100
        def __init__(self): self.marks, self.n_train = {}, 0
        def _mark(self, key):
            if hasattr(counter, 'poll'): counter.poll()
            self.marks[key] = len(counter.calls)
        def before_train(self): self._mark('before_train')
        def after_train(self): self._mark('after_train')
        def before_validate(self): self._mark('before_validate')
        def after_validate(self): self._mark('after_validate')
        def after_batch(self): self.n_train += self.learn.training
    return PhaseMarks()


def sync_stats(calls: list, host_side, marks: dict, n_train: int) -> dict:
    "Per-batch figures from the recorded `calls` (`(what, where)`), leaving out those `host_side(where)` says stay on the CPU."
    counted = [not host_side(w) for _, w in calls]
    def n(lo, hi): return sum(counted[lo:hi])
    train = n(marks.get('before_train', 0), marks.get('after_train', 0))
    valid = n(marks.get('before_validate', 0), marks.get('after_validate', 0))
    total = sum(counted)
    by_where = Counter(f"{what} @ {w}" for (what, w), c in zip(calls, counted) if c)
    host = Counter(f"{what} @ {w}" for (what, w), c in zip(calls, counted) if not c)
    return dict(n_train_batches=n_train, syncs_total=total, syncs_train=train, syncs_valid=valid,
                syncs_per_train_batch=total / max(n_train, 1), train_syncs_per_train_batch=train / max(n_train, 1),
                by_caller=dict(by_where.most_common(10)),
                host_side_not_counted=dict(host.most_common(10)), host_side_total=sum(host.values()))


def section_syncs(device: torch.device, dry: bool, budget: Budget) -> tuple[str, dict]:
    "Host-device syncs per training batch in one short `Learner.fit` epoch with the default callbacks (no progress bar)."
    from adamw_course.data import DataLoaders, DeviceLoader, synth_dls
    from adamw_course.learner import Learner
    from adamw_course.models import tiny_cnn, wrn_22
    torch.manual_seed(0)
    if dry:
        dls, model, what = synth_dls(), tiny_cnn(), "tiny_cnn on synth_dls() (CPU): counted .item()/.tolist()/.cpu() calls"
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (128 * 16 + 512, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (len(x),), generator=g)
        dls = DataLoaders(DeviceLoader(x[:2048], y[:2048], 128, shuffle=True, augment=True, drop_last=True, device=device, seed=0),
                          DeviceLoader(x[2048:], y[2048:], 256, device=device))
        model, what = wrn_22(), "wrn_22, bs 128, synthetic CUDA tensors, 'auto' precision: CUDA sync debug mode warnings"
    learn = Learner(model, dls, mixed_precision='auto')
    counter, stop = sync_counter(device), deadline_cb(budget)
    marks = phase_marks(counter)
    with learn.no_bar(), counter:
        learn.fit(1, lr=1e-3, cbs=[marks, stop])
        if hasattr(counter, 'poll'): counter.poll()
    if stop.hit: raise RuntimeError("stopped by the time budget before the epoch ended")
    s = sync_stats(counter.calls, counter.host_side, marks.marks, marks.n_train)
    if s['n_train_batches'] == 0: raise RuntimeError("no training batch ran")
    s.update(setup=what, amp_dtype=str(learn.amp_dtype))
    summary = (f"{s['syncs_per_train_batch']:.2f} syncs per training batch ({s['syncs_total']} in one epoch of "
               f"{s['n_train_batches']} training batches: {s['syncs_train']} in training, {s['syncs_valid']} in validation)")
    top = '; '.join(f"{k.split(' @ ')[1]}: {v / s['n_train_batches']:.2f}" for k, v in list(s['by_caller'].items())[:4])
    if top: summary += f"; per training batch by caller: {top}"
    if s['host_side_total']: summary += f"; {s['host_side_total']} reads of CPU-resident step counters not counted"
    return summary, s


# ---------------------------------------------------------------- 4. the post's recipe, short
def epoch_timer(device):
    "A callback timing each epoch (and its training phase), synchronizing the device first."
    from adamw_course.callback import Callback
    class EpochTimer(Callback):
        order = 100
        def __init__(self): self.epoch_s, self.train_s = [], []
        def before_epoch(self): _sync(device); self.t0 = time.perf_counter()
        def after_train(self): _sync(device); self.train_s.append(time.perf_counter() - self.t0)
        def after_epoch(self): _sync(device); self.epoch_s.append(time.perf_counter() - self.t0)
    return EpochTimer()


def section_recipe(device: torch.device, dry: bool, data: Path | None, budget: Budget) -> tuple[str, dict]:
    "The post's recipe, short: AdamW with POST's lr and wd and its 1cycle; test accuracy plain and with TTA, s/epoch."
    from adamw_course.adamw import POST, AdamW
    from adamw_course.data import cifar10, synth_dls
    from adamw_course.learner import Learner
    from adamw_course.models import small_cnn, tiny_cnn, wrn_22
    from adamw_course.schedule import one_cycle_post
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if dry:
        n_epochs = 1
        if data is not None:
            dls = cifar10(data, n_per_class=20, n_test_per_class=10, bs=32, device='cpu')
            model, setup = small_cnn(), f"small_cnn, 200 train / 100 test images of {data.name}, bs 32, CPU"
        else:
            dls, model, setup = synth_dls(), tiny_cnn(), "tiny_cnn on synth_dls() (no CIFAR-10 copy found), CPU"
    else:
        if data is None: raise RuntimeError("no offline CIFAR-10 copy: pass --data (see this script's docstring); nothing is downloaded")
        n_epochs = 5
        torch.backends.cudnn.benchmark = True
        dls = cifar10(data, bs=POST['bs'], device=device)
        model, setup = wrn_22(), f"wrn_22, full {data.name}, bs {POST['bs']}, cudnn.benchmark on"
    load_s = time.perf_counter() - t0
    learn = Learner(model, dls, opt_func=AdamW, wd=POST['adamw_wd'])
    timer, stop = epoch_timer(device), deadline_cb(budget)
    sched = one_cycle_post(POST['adamw_lr'], moms=(0.95, 0.85))
    with learn.no_bar(): learn.fit_sched(n_epochs, sched, cbs=[timer, stop])
    if stop.hit: raise RuntimeError(f"stopped by the time budget after {len(timer.epoch_s)} of {n_epochs} epochs")
    acc = learn.validate()['accuracy']
    _, acc_tta = learn.tta()
    d = dict(setup=setup, epochs=n_epochs, lr=POST['adamw_lr'], wd=POST['adamw_wd'], moms=(0.95, 0.85),
             amp_dtype=str(learn.amp_dtype), data=str(data) if data else None, load_s=round(load_s, 2),
             n_train_batches=len(dls.train), accuracy=acc, accuracy_tta=acc_tta,
             epoch_s=[round(t, 3) for t in timer.epoch_s], train_s=[round(t, 3) for t in timer.train_s],
             recorder_values=learn.recorder.values, reference=CALIBRATION)
    later = timer.epoch_s[1:] or timer.epoch_s
    d['s_per_epoch'] = statistics.median(later)
    summary = (f"{n_epochs} epoch(s): accuracy {acc:.2%} plain, {acc_tta:.2%} with TTA; {d['s_per_epoch']:.2f} s/epoch"
               + (" (median after the first)" if len(timer.epoch_s) > 1 else '') +
               f", first {timer.epoch_s[0]:.2f} s; reference: 90.7% for 30 epochs (the data README's calibration)")
    return summary, d


SIZED_LESSONS = ('05a_data', '05b_models', '05c_callbacks', '05d_learner', '06_lr_finder', '09_finetune')


def section_notebooks(device: torch.device, dry: bool, data: Path | None, budget: Budget) -> tuple[str, dict]:
    """The lessons that have a SIZE switch, run as a reader runs them (tools/colab_check.py: every cell, in a Jupyter
    kernel) at SIZE='smoke': their GPU cells run at the smallest size and the rest on the GPU. A dry run runs lesson 05a
    only, on the CPU, where its GPU cell says it is skipped."""
    from adamw_course.data import ENV_VAR
    names = SIZED_LESSONS[:1] if dry else SIZED_LESSONS
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONUNBUFFERED': '1'}
    if data is not None: env[ENV_VAR] = str(data)
    cmd = [sys.executable, str(REPO/'tools'/'colab_check.py'), '--size', 'smoke', '--allow-repo', '--limit-s', '300',
           *([] if dry else ['--gpu']), *(str(REPO/'nbs'/f'{n}.ipynb') for n in names)]
    timeout = budget.left()
    try: p = subprocess.run(cmd, cwd=tempfile.mkdtemp(), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        raise RuntimeError(f"timed out after {timeout:.0f} s; finished: {notebook_lines(out) or 'none'}") from None
    lines = notebook_lines(p.stdout)
    d = dict(command=' '.join(['python3', *cmd[1:]]), returncode=p.returncode, lessons=lines, stderr_tail=p.stderr[-3000:])
    if p.returncode != 0:
        bad = [l for l in lines if ': OK (' not in l]
        raise RuntimeError(f"{len(bad)} of {len(names)} lessons failed: " + ('; '.join(bad) or (p.stderr.strip().splitlines() or ['?'])[-1]))
    return f"{len(lines)} lessons at SIZE='smoke' on {device.type}: " + ', '.join(l.split(':')[0] for l in lines) + ' OK', d


def notebook_lines(out: str) -> list[str]:
    "colab_check.py's per-lesson lines ('05a_data.ipynb: OK (12.3 s)') in its output."
    return [l for l in out.splitlines() if re.match(r'^\S+\.ipynb: ', l)]


# ---------------------------------------------------------------- main
# (name, estimated seconds on a GPU, on a dry run): a section starts only if its estimate fits in what is left
# (the recipe's estimate is its expected length; a fit that runs longer is stopped at the budget by a callback)
ESTIMATES = {'env': (15, 10), 'bench optim_step': (45, 30), 'bench learner_epoch': (150, 60), 'bench lr_find': (45, 30),
             'syncs': (45, 15), 'recipe': (100, 40), 'notebooks': (180, 40)}


def main(argv=None) -> int:
    "Run the sections, write the report, return the exit code (2 without CUDA unless --dry-run)."
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dry-run', action='store_true', help='every section at its smallest size, on the CPU (for CI)')
    ap.add_argument('--out', default='results/gpu', help='folder for report.json and report.md (default: results/gpu)')
    ap.add_argument('--data', default=None, help='CIFAR-10 archive or folder (default: $ADAMW_COURSE_CIFAR10, else '
                                                 'adamw_course.data.find_cifar10())')
    ap.add_argument('--budget-minutes', type=float, default=8.0, help='wall-clock budget; later sections are skipped '
                                                                      'when they would pass it (default: 8)')
    args = ap.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on a CPU", file=sys.stderr)
        return 2
    budget = Budget(args.budget_minutes * 60, start=_T0)
    device = torch.device('cpu' if dry else 'cuda')
    if dry: torch.set_num_threads(1)
    data = resolve_data(args.data)
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    sections = [
        ('env', lambda: section_env(device)),
        *((f'bench {b}', (lambda b=b: section_bench(b, dry, data, budget))) for b in ('optim_step', 'learner_epoch', 'lr_find')),
        ('syncs', lambda: section_syncs(device, dry, budget)),
        ('recipe', lambda: section_recipe(device, dry, data, budget)),
        ('notebooks', lambda: section_notebooks(device, dry, data, budget)),
    ]
    results = []
    for name, fn in sections:
        print(f"== {name}", flush=True)
        rec = run_section(name, fn, budget, ESTIMATES[name][1 if dry else 0])
        print(f"   {rec['status']} ({rec['seconds']:.1f} s): {rec['summary']}", flush=True)
        results.append(rec)
    env = results[0]['details'] if results[0]['status'] == 'ok' else {}
    report = dict(dry_run=dry, started=started, budget_s=budget.total_s, total_s=round(budget.elapsed(), 1),
                  data=str(data) if data else None, env=env, sections=results, exit_code=exit_code(results))
    _, md = write_report(Path(args.out), report)
    print(md.read_text(), end='')
    return report['exit_code']


if __name__ == '__main__':
    sys.exit(main())
