"""Property tests for `adamw_course.schedule` (hypothesis) and its parity with torch's `OneCycleLR` over many settings.

The lesson nbs/07_schedule.ipynb has the worked examples; this file runs the checks over random and exhaustive settings:
- end points exact, continuity (every step moves by at most the steepest per-step slope it passes through), and
  monotonicity within each phase, for random phase lists and for the presets;
- the lr and momentum/beta1 sequences of `ParamScheduler(opt, one_cycle_torch(...))` equal `OneCycleLR`'s to 1e-12,
  for Adam and SGD(momentum=0.9), two param groups, with and without `three_phase`;
- a clear `ValueError` for each kind of bad input.
"""
import itertools
import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from adamw_course.optim_base import get_mom
from adamw_course.schedule import (Phase, Schedule, ParamScheduler, anneal_const, anneal_cos, anneal_exp, anneal_linear,
                                   anneal_poly, const_schedule, one_cycle_fastai, one_cycle_post, one_cycle_rnn,
                                   one_cycle_torch, phase_ends, step_schedule)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- helpers

def max_slope(phase: Phase, key: str) -> float:
    "Largest |d value / d pos| of one phase's curve, from the annealer's formula."
    start, end = getattr(phase, key)
    f = phase.lr_anneal if key == 'lr' else getattr(phase, f'{key}_anneal')
    name = f.__name__
    if name == 'anneal_const': return 0.
    if name == 'anneal_linear': return abs(end - start)
    if name == 'anneal_cos': return math.pi / 2 * abs(end - start)
    if name == 'anneal_exp': return abs(math.log(end / start)) * max(start, end)
    if name.startswith('anneal_poly('): return float(name[len('anneal_poly('):-1]) * abs(end - start)   # power >= 1 here
    raise AssertionError(f'unknown annealer {name}')


def intervals(sched: Schedule, T: int):
    "(start, end) step interval of each phase, as `Schedule.at` walks them."
    ends, out, start = sched.ends(T), [], 0.
    for e in ends: out.append((start, e)); start = e
    return out


def phase_of(sched: Schedule, t: int, T: int) -> int:
    ends = sched.ends(T)
    return next((i for i, e in enumerate(ends) if t <= e), len(ends) - 1)


def check_continuous(sched: Schedule, T: int):
    "Each step moves each setting by at most the steepest per-step slope among the phases it passes through."
    vals = sched.values(T)
    spans = intervals(sched, T)
    for key in sched.names:
        slopes = [max_slope(p, key) / (b - a) if b > a else 0. for p, (a, b) in zip(sched.phases, spans)]
        for t in range(T - 1):
            crossed = [s for s, (a, b) in zip(slopes, spans) if b > a and a < t + 1 and b > t]
            bound = max(crossed, default=0.)
            diff = abs(vals[key][t + 1] - vals[key][t])
            scale = max(abs(vals[key][t]), abs(vals[key][t + 1]))
            assert diff <= bound * (1 + 1e-9) + 1e-12 * scale + 1e-300, (key, t, diff, bound)


def check_monotone(sched: Schedule, T: int):
    "Within each phase, each setting moves from its start towards its end and never back."
    vals = sched.values(T)
    for key in sched.names:
        for t in range(T - 1):
            k = phase_of(sched, t, T)
            if phase_of(sched, t + 1, T) != k: continue
            start, end = getattr(sched.phases[k], key)
            step = vals[key][t + 1] - vals[key][t]
            tol = 1e-13 * max(abs(start), abs(end))
            if end >= start: assert step >= -tol, (key, t, step)
            else: assert step <= tol, (key, t, step)


# ---------------------------------------------------------------- random schedules

ANNEALERS = st.sampled_from(['const', 'linear', 'cos', 'exp', 'poly'])


@st.composite
def schedules(draw, conventions=('even', 'fastai', 'torch')):
    "A random continuous schedule: each phase starts where the previous one ended; lr and mom both set."
    n = draw(st.integers(1, 5))
    lr, mom = draw(st.floats(1e-6, 1.)), draw(st.floats(0., 0.99))
    phases = []
    for _ in range(n):
        kind = draw(ANNEALERS)
        if kind == 'const': lr_end, mom_end = lr, mom
        else: lr_end, mom_end = draw(st.floats(1e-7, 1.)), draw(st.floats(0., 0.99))
        f = {'const': anneal_const, 'linear': anneal_linear, 'cos': anneal_cos, 'exp': anneal_exp,
             'poly': anneal_poly(draw(st.floats(1., 4.)))}[kind]
        mom_f = anneal_linear if kind == 'exp' else f          # momentum may be 0, which exp cannot reach
        phases.append(Phase(draw(st.floats(0.05, 5.)), (lr, lr_end), (mom, mom_end), lr_anneal=f, mom_anneal=mom_f))
        lr, mom = lr_end, mom_end
    return Schedule(phases, draw(st.sampled_from(conventions)))


@SETTINGS
@given(schedules(conventions=('even',)), st.integers(2, 2000))
def test_end_points_exact_even(sched, T):
    "With the 'even' convention the first batch gets exactly the start values and the last exactly the end values."
    assume(T >= max(2, len(sched.phases)))
    first, last = sched.phases[0], sched.phases[-1]
    assert sched.at(0, T) == {'lr': first.lr[0], 'mom': first.mom[0]}
    assert sched.at(T - 1, T) == {'lr': last.lr[1], 'mom': last.mom[1]}
    assert sched.at(T, T) == sched.at(T - 1, T)


@SETTINGS
@given(schedules(), st.integers(2, 1500))
def test_continuous(sched, T):
    assume(T >= len(sched.phases))
    # torch's convention ends phase k at c_k*T - k: the ends only increase when every phase is at least one step long
    assume(all(a <= b for a, b in zip(sched.ends(T), sched.ends(T)[1:])))
    check_continuous(sched, T)


@SETTINGS
@given(schedules(), st.integers(2, 1500))
def test_monotone_within_phases(sched, T):
    assume(T >= len(sched.phases))
    check_monotone(sched, T)


@SETTINGS
@given(st.lists(st.floats(0.01, 10.), min_size=1, max_size=6), st.integers(1, 10_000),
       st.sampled_from(['even', 'fastai', 'torch']))
def test_phase_ends(fracs, T, convention):
    assume(T >= len(fracs))
    ends = phase_ends(fracs, T, convention)
    assert len(ends) == len(fracs)
    assert ends[-1] == {'even': T - 1, 'fastai': T, 'torch': T - 1}[convention]
    if convention != 'torch': assert all(a <= b for a, b in zip(ends, ends[1:]))


# ---------------------------------------------------------------- presets with random settings

fracs = st.floats(0.01, 0.99)
divs = st.floats(1.5, 1e3)


@SETTINGS
@given(st.floats(1e-5, 1.), divs, st.floats(0.01, 0.5), st.floats(0.5, 0.99), st.floats(0., 0.49), st.integers(3, 1500))
def test_post_preset(lr, div, pct, hi, gap, T):
    lo = hi - gap
    s = one_cycle_post(lr, div=div, pct=pct, moms=(hi, lo))
    assert s.at(0, T) == {'lr': lr / div, 'mom': hi}
    assert s.at(T - 1, T) == {'lr': lr / (100 * div), 'mom': hi}
    v = s.values(T)
    assert max(v['lr']) <= lr and min(v['mom']) >= lo
    check_continuous(s, T); check_monotone(s, T)


@SETTINGS
@given(st.floats(1e-5, 1.), divs, st.floats(10., 1e6), fracs, st.integers(2, 1500))
def test_fastai_preset(lr, div, div_final, pct, T):
    s = one_cycle_fastai(lr, div=div, div_final=div_final, pct_start=pct)
    assert s.at(0, T) == {'lr': lr / div, 'mom': 0.95}
    check_continuous(s, T); check_monotone(s, T)


@SETTINGS
@given(st.floats(1e-5, 1.), divs, st.floats(10., 1e6), st.floats(0.01, 0.49), st.booleans(),
       st.sampled_from(['cos', 'linear']), st.integers(4, 1500))
def test_torch_preset(lr, div, final_div, pct, three, strategy, T):
    s = one_cycle_torch(lr, pct_start=pct, div_factor=div, final_div_factor=final_div, three_phase=three,
                        anneal_strategy=strategy)
    last = s.at(T - 1, T)
    assert last['lr'] == lr / div / final_div and last['mom'] == 0.95
    check_continuous(s, T); check_monotone(s, T)


@SETTINGS
@given(st.floats(1e-5, 1.), divs, st.lists(st.floats(0.1, 50.), min_size=4, max_size=4), st.integers(4, 1500))
def test_rnn_preset(lr, div, lengths, T):
    s = one_cycle_rnn(lr, div=div, lengths=lengths)
    assert s.at(0, T) == {'lr': lr / div, 'mom': 0.8}
    assert s.at(T - 1, T) == {'lr': 0., 'mom': 0.8}
    check_continuous(s, T); check_monotone(s, T)


@SETTINGS
@given(st.floats(1e-5, 1.), st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True), st.integers(5, 1000))
def test_step_preset(lr, milestones, T):
    milestones = sorted(milestones)
    s = step_schedule(lr, milestones=milestones, gamma=0.1)
    v = s.values(T)['lr']
    assert v[0] == lr and all(b <= a for a, b in zip(v, v[1:]))
    assert set(v) <= {lr * 0.1 ** i for i in range(len(milestones) + 1)}


# ---------------------------------------------------------------- torch OneCycleLR parity

def _opt(opt_cls):
    ps = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    for p in ps: p.grad = torch.ones_like(p)
    extra = {'momentum': 0.9} if opt_cls is torch.optim.SGD else {}
    return opt_cls([{'params': [ps[0]]}, {'params': [ps[1]]}], lr=0.1, **extra)



def run_both(opt_cls, T, max_lr=(2e-3, 1e-2), **kw):
    "Drive two identical optimizers with OneCycleLR and with ParamScheduler(one_cycle_torch); largest gap seen."
    o1, o2 = _opt(opt_cls), _opt(opt_cls)
    ref = torch.optim.lr_scheduler.OneCycleLR(o1, max_lr=list(max_lr), total_steps=T, **kw)
    ours = ParamScheduler(o2, one_cycle_torch(max(max_lr), **kw), T, lr_max=list(max_lr))
    worst = 0.
    for t in range(T):
        for g1, g2 in zip(o1.param_groups, o2.param_groups):
            worst = max(worst, abs(g1['lr'] - g2['lr']), abs(get_mom(g1) - get_mom(g2)))
            assert g1.get('betas', (0, 0))[1] == g2.get('betas', (0, 0))[1]
        o1.step(); o2.step(); ref.step(); ours.step()
    return worst


PARITY = list(itertools.product([torch.optim.Adam, torch.optim.SGD], [3, 7, 10, 37, 100, 391, 1201],
                                [0.1, 0.25, 0.3, 0.45], [False, True], ['cos', 'linear']))


@pytest.mark.parametrize('opt_cls,T,pct,three,strategy', PARITY,
                         ids=[f'{o.__name__}-T{T}-pct{p}-{"3ph" if th else "2ph"}-{s}' for o, T, p, th, s in PARITY])
def test_onecycle_parity(opt_cls, T, pct, three, strategy):
    kw = dict(pct_start=pct, three_phase=three, anneal_strategy=strategy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            gap = run_both(opt_cls, T, **kw)
    except ZeroDivisionError:
        # torch divides by zero when a phase is zero steps long (pct*T == 1); ours gives the phase's end value
        assert any(abs(e - s) == 0 for s, e in zip([0., *phase_ends([pct, 1 - pct] if not three else [pct, pct, 1 - 2 * pct], T, 'torch')],
                                                     phase_ends([pct, 1 - pct] if not three else [pct, pct, 1 - 2 * pct], T, 'torch')))
        one_cycle_torch(1e-2, **kw).values(T)
        return
    assert gap <= 1e-12


@pytest.mark.parametrize('opt_cls', [torch.optim.Adam, torch.optim.SGD])
def test_onecycle_parity_other_settings(opt_cls):
    for kw in (dict(div_factor=10., final_div_factor=1e3), dict(base_momentum=0.8, max_momentum=0.9),
               dict(cycle_momentum=False), dict(pct_start=0.2, three_phase=True, div_factor=5.)):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            assert run_both(opt_cls, 250, **kw) <= 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 600), st.floats(0.05, 0.95), st.booleans(), st.sampled_from(['cos', 'linear']),
       st.floats(1.5, 100.), st.floats(10., 1e5), st.sampled_from([torch.optim.Adam, torch.optim.SGD]))
def test_onecycle_parity_random(T, pct, three, strategy, div, final_div, opt_cls):
    assume(not three or pct < 0.5)
    assume(T >= (3 if three else 2))             # a schedule needs a step per phase (it says so with a ValueError)
    kw = dict(pct_start=pct, three_phase=three, anneal_strategy=strategy, div_factor=div, final_div_factor=final_div)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try: gap = run_both(opt_cls, T, **kw)
        except ZeroDivisionError: assume(False)
    assert gap <= 1e-12


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize('make', [lambda v: one_cycle_post(pct=v), lambda v: one_cycle_fastai(pct_start=v),
                                  lambda v: one_cycle_torch(1e-3, pct_start=v)])
@pytest.mark.parametrize('bad', [0, 1, -0.5, 1.5, 30])
def test_bad_pct(make, bad):
    with pytest.raises(ValueError, match='must lie strictly between 0 and 1'): make(bad)


@pytest.mark.parametrize('make', [lambda v: one_cycle_post(div=v), lambda v: one_cycle_fastai(div=v),
                                  lambda v: one_cycle_fastai(div_final=v), lambda v: one_cycle_torch(1e-3, div_factor=v),
                                  lambda v: one_cycle_torch(1e-3, final_div_factor=v), lambda v: one_cycle_rnn(1e-3, div=v)])
@pytest.mark.parametrize('bad', [0, -1., float('nan')])
def test_bad_div(make, bad):
    with pytest.raises(ValueError, match='must be a finite number > 0'): make(bad)


def test_too_few_steps():
    opt = torch.optim.AdamW([torch.zeros(1)])
    with pytest.raises(ValueError, match=r'total_steps must be an int >= the number of phases \(3\), got 2'):
        ParamScheduler(opt, one_cycle_post(), 2)
    with pytest.raises(ValueError, match=r'number of phases \(4\)'): one_cycle_rnn(1e-3).values(3)
    with pytest.raises(ValueError, match='must be an int'): ParamScheduler(opt, one_cycle_post(), 10.5)


@pytest.mark.parametrize('moms', [(1.0, 0.85), (0.95, -0.01), (1.5, 0.5)])
def test_bad_momentum(moms):
    with pytest.raises(ValueError, match=r'must lie in \[0, 1\)'): one_cycle_post(moms=moms)
    with pytest.raises(ValueError, match=r'must lie in \[0, 1\)'): one_cycle_fastai(moms=(*moms, 0.9))
    with pytest.raises(ValueError, match=r'must lie in \[0, 1\)'): one_cycle_torch(1e-3, base_momentum=moms[1], max_momentum=moms[0])


def test_other_bad_input():
    with pytest.raises(ValueError, match='cycle_momentum=False'): ParamScheduler(torch.optim.Adagrad([torch.zeros(1)]), one_cycle_post(), 10)
    with pytest.raises(ValueError, match='step must be in'): one_cycle_post().at(11, 10)
    with pytest.raises(ValueError, match='convention'): Schedule([Phase(1, 0.1)], convention='keras')
    with pytest.raises(ValueError, match='three_phase=True needs pct_start < 0.5'): one_cycle_torch(1e-3, pct_start=0.6, three_phase=True)
    with pytest.raises(ValueError, match='anneal_strategy'): one_cycle_torch(1e-3, anneal_strategy='exp')
    with pytest.raises(ValueError, match='start > 0'): anneal_exp(0., 1., 0.5)
    with pytest.raises(ValueError, match='lr must be a finite number > 0'): const_schedule(0.)
