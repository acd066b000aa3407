"""Parity of the learning-rate suggestions of `adamw_course.lr_finder` with fastai's.

The reference below transcribes, loop for loop, the four suggestion functions `valley`, `slide`, `minimum` and
`steep` of fastai 2.8.4 (`fastai/callback/schedule.py`; the same code since fastai 2.5). fastai is not a
dependency, so the transcription stands in for it; it was checked against the functions in the fastai 2.8.4 wheel
on the curves of this file. Like fastai, it works on torch tensors; we give it float64 tensors holding exactly the
values our functions get.

On every curve where fastai's answer is a point of the curve, ours must return exactly the same learning rate.
Ours returns None (with an `LRFinderWarning`) in the few cases where fastai has no real answer, and the test checks
that each of them is one of the documented cases:

- valley: the loss never fell (fastai returns the first learning rate), or no three points decrease and the first
  two do (k = 2 ending at point 1: fastai's index is -1, which Python reads as the last learning rate);
- steep: no step goes down (fastai returns the least rising step);
- minimum: the lowest loss is the first one (fastai returns lrs[0]/10);
- slide: the curve has lr_diff points or fewer (fastai raises an IndexError), or no pair of slopes agrees (fastai
  falls back to the first learning rate).

Guards against a vacuous test: most curves get an answer, the answers vary, the four methods disagree with each
other, and the rules this library used before (valley halfway along the descent, slide one point left, steep from
central differences) give different answers on some of these curves.
"""
import warnings

import numpy as np
import pytest
import torch

from adamw_course.lr_finder import (LRFinderWarning, suggest_lrs, suggest_minimum, suggest_slide, suggest_steep,
                                    suggest_valley, sweep_lrs)

# ---- fastai 2.8.4, fastai/callback/schedule.py, transcribed. Each returns the suggested lr as a Python float. ----

def fastai_valley(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    "fastai's `valley`: longest decreasing subsequence by a double loop, then a point about halfway along it"
    n = len(losses)
    lds = [1] * n                        # lds[i]: length of the longest decreasing subsequence ending at i
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:    # checked inside the inner loop, as in fastai
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])

def fastai_slide(lrs: torch.Tensor, losses: torch.Tensor, lr_diff: int = 15, thresh: float = .005,
                 adjust_value: float = 1.) -> float:
    "fastai's `slide`: move a pair of points lr_diff apart leftwards from the end until their slopes agree"
    grad = np.gradient(losses.numpy())
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]            # an IndexError when there are lr_diff points or fewer
    while l_idx >= -len(losses) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]        # recorded before the step left: the last pair that disagreed
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value

def fastai_minimum(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    "fastai's `minimum`: a tenth of the lr at the lowest loss"
    return lrs[losses.argmin()].item() / 10

def fastai_steep(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    "fastai's `steep`: the left end of the step with the most negative forward slope against ln(lr)"
    grads = (losses[1:] - losses[:-1]) / (lrs[1:].log() - lrs[:-1].log())
    return lrs[grads.argmin()].item()

REFERENCE = {'valley': fastai_valley, 'steep': fastai_steep, 'minimum': fastai_minimum, 'slide': fastai_slide}
OURS = {'valley': suggest_valley, 'steep': suggest_steep, 'minimum': suggest_minimum, 'slide': suggest_slide}

# ---- the rules this library used before it matched fastai: the test must be able to tell them apart ----

def old_valley_index(losses) -> int:
    "Halfway along the stretch of k points that ends where the longest decreasing subsequence ends"
    n = len(losses)
    lds = [1] * n
    for i in range(n):
        for j in range(i):
            if losses[j] > losses[i]: lds[i] = max(lds[i], lds[j] + 1)
    end = int(np.argmax(lds))
    return end - lds[end] // 2

def old_slide_index(losses, lr_diff=15, thresh=.005) -> int | None:
    "The left end of the first pair that agrees (one point left of fastai's)"
    g = np.gradient(np.asarray(losses, dtype=float))
    return next((r - lr_diff for r in range(len(g) - 1, lr_diff - 1, -1) if abs(g[r] - g[r - lr_diff]) <= thresh), None)

def old_steep_index(lrs, losses) -> int:
    "The most negative central slope against log10(lr), end points left out"
    L, x = np.asarray(losses, dtype=float), np.log10(np.asarray(lrs, dtype=float))
    return int(np.argmin((L[2:] - L[:-2]) / (x[2:] - x[:-2]))) + 1

# ---- curves ----

def curves(seed: int = 0, n_curves: int = 320) -> list[tuple[str, list[float], list[float]]]:
    "Random and structured smoothed-loss curves with their lrs: (kind, lrs, losses)"
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_curves):
        kind = ['u_shape', 'u_shape_rough', 'finder_like', 'plateaus', 'random_walk', 'falling', 'rising', 'flat',
                'noise', 'short'][c % 10]
        n = int(rng.integers(2, 17)) if kind == 'short' else int(rng.integers(20, 121))
        start = 10. ** rng.uniform(-7, -3)
        lrs = sweep_lrs(start, start * 10. ** rng.uniform(2, 8), max(n, 10))[:n]
        u = np.linspace(-1, 1, n)
        if kind == 'u_shape': L = 2 + u ** 2 + rng.normal(0, 0.02, n)
        elif kind == 'u_shape_rough': L = 2 + (u - rng.uniform(-.5, .5)) ** 2 + rng.normal(0, 0.2, n)
        elif kind == 'finder_like':        # flat, a sigmoid descent, an explosion, smoothed noise
            L = 2.3 - 0.6 / (1 + np.exp(-8 * (u - rng.uniform(-.5, .3)))) + np.expm1(np.clip(6 * u - 4, 0, None))
            L += np.convolve(rng.normal(0, 0.03, n + 9), np.ones(10) / 10, 'valid')
        elif kind == 'plateaus': L = np.round(2 + u ** 2 + rng.normal(0, 0.05, n), 1)   # many exact ties
        elif kind == 'random_walk': L = 2 + np.cumsum(rng.normal(0, 0.02, n))
        elif kind == 'falling': L = np.sort(rng.random(n))[::-1] + 1
        elif kind == 'rising': L = np.sort(rng.random(n)) + 1
        elif kind == 'flat': L = np.full(n, 2.3)
        elif kind == 'noise': L = rng.random(n)
        else: L = 2 + u ** 2 + rng.normal(0, 0.05, n)
        out.append((kind, lrs, [float(v) for v in L]))
    return out

CURVES = curves()

def run_ours(method, lrs, losses, **kw):
    "Our suggestion, and the LRFinderWarnings it raised"
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        out = OURS[method](lrs, losses, **kw)
    assert all(issubclass(w.category, LRFinderWarning) for w in ws)
    assert (out is None) == (len(ws) == 1), (method, out, [str(w.message) for w in ws])
    return out

def run_reference(method, lrs, losses, **kw):
    "fastai's answer, or 'IndexError' where fastai fails"
    try: return REFERENCE[method](torch.tensor(lrs, dtype=torch.float64), torch.tensor(losses, dtype=torch.float64), **kw)
    except IndexError: return 'IndexError'

def no_answer_is_documented(method, lrs, losses, ref, **kw) -> bool:
    "True if ours returning None is one of the cases the docstrings list, with fastai's answer as they describe it"
    L = np.asarray(losses)
    if method == 'valley':
        if bool(np.all(np.diff(L) >= 0)): return ref == lrs[0]               # never fell: fastai's first lr
        n = len(L)
        no_triple = not any(L[a] > L[b] > L[c] for a in range(n) for b in range(a + 1, n) for c in range(b + 1, n))
        return L[1] < L[0] and no_triple and ref == lrs[-1]                  # k = 2, end = 1: fastai's index -1
    if method == 'steep': return bool(np.all(np.diff(L) >= 0)) and ref is not None
    if method == 'minimum': return int(np.argmin(L)) == 0 and ref == lrs[0] / 10
    lr_diff, thresh = kw.get('lr_diff', 15), kw.get('thresh', .005)
    if len(L) <= lr_diff: return ref == 'IndexError'
    g = np.gradient(L)
    never = all(abs(g[r] - g[r - lr_diff]) > thresh for r in range(len(L) - 1, lr_diff - 1, -1))
    return never and ref == lrs[0] * kw.get('adjust_value', 1.)

@pytest.mark.parametrize('method', list(OURS))
def test_same_lr_as_fastai(method):
    answered = 0
    for kind, lrs, losses in CURVES:
        ours, ref = run_ours(method, lrs, losses), run_reference(method, lrs, losses)
        if ours is None:
            assert no_answer_is_documented(method, lrs, losses, ref), (method, kind, ref)
        else:
            assert ours == ref, (method, kind, ours, ref)
            answered += 1
    assert answered >= 0.6 * len(CURVES), (method, answered)       # not vacuous: most curves get an answer

@pytest.mark.parametrize('kw', [dict(lr_diff=5), dict(lr_diff=30, thresh=0.05), dict(adjust_value=0.5)])
def test_slide_options(kw):
    answered = 0
    for kind, lrs, losses in CURVES:
        ours, ref = run_ours('slide', lrs, losses, **kw), run_reference('slide', lrs, losses, **kw)
        if ours is None: assert no_answer_is_documented('slide', lrs, losses, ref, **kw), (kind, ref)
        else: assert ours == ref, (kind, ours, ref); answered += 1
    assert answered >= 0.5 * len(CURVES)

def test_edge_cases():
    "The boundaries of the documented differences, one curve each"
    lrs = sweep_lrs(1e-5, 1., 20)
    first_drop = [2.] + [1.] * 19                                # k = 2, ending at point 1: fastai's index is -1
    assert run_ours('valley', lrs, first_drop) is None and run_reference('valley', lrs, first_drop) == lrs[-1]
    late_drop = [2.] * 5 + [1.] * 15                             # k = 2 ending at point 5: index 3, a real answer
    assert run_ours('valley', lrs, late_drop) == run_reference('valley', lrs, late_drop) == lrs[3]
    straight = [3. - 0.1 * i for i in range(20)]                 # the first pair already agrees: its left end
    assert run_ours('slide', lrs, straight) == run_reference('slide', lrs, straight) == lrs[20 - 1 - 15]
    exactly = straight[:16]                                      # lr_diff + 1 points: one pair, at the very start
    assert run_ours('slide', lrs[:16], exactly) == run_reference('slide', lrs[:16], exactly) == lrs[0]

def test_not_vacuous():
    "The curves tell fastai's rules from the old ones, and the four methods from each other"
    differ = dict(valley=0, slide=0, steep=0)
    indices, disagree = {m: set() for m in OURS}, 0
    for kind, lrs, losses in CURVES:
        res = {m: run_ours(m, lrs, losses) for m in OURS}
        for m, v in res.items():
            if v is not None: indices[m].add(int(np.argmin(losses)) if m == 'minimum' else lrs.index(v))
        if res['valley'] is not None: differ['valley'] += res['valley'] != lrs[old_valley_index(losses)]
        if res['slide'] is not None and (old := old_slide_index(losses)) is not None: differ['slide'] += res['slide'] != lrs[old]
        if res['steep'] is not None and len(lrs) >= 3: differ['steep'] += res['steep'] != lrs[old_steep_index(lrs, losses)]
        answers = [v for v in res.values() if v is not None]
        disagree += len(set(answers)) > 1
    assert all(v >= 10 for v in differ.values()), differ
    assert all(len(s) >= 20 for s in indices.values()), {m: len(s) for m, s in indices.items()}
    assert disagree >= 0.5 * len(CURVES), disagree

def test_float32_comparisons():
    """fastai's `Learner.lr_find` hands its suggesters float32 tensors. valley and minimum only compare losses, so on
    float32 values they must agree with fastai run in float32 to the index, and to the float32 lr."""
    for kind, lrs, losses in CURVES[:100]:
        lrs32, losses32 = torch.tensor(lrs), torch.tensor(losses)               # float32, as in fastai
        as_floats = lambda t: [float(v) for v in t]
        for m in ('valley', 'minimum'):
            ours = run_ours(m, as_floats(lrs32), as_floats(losses32))
            if ours is not None: assert ours == REFERENCE[m](lrs32, losses32), (m, kind)

def test_suggest_lrs_passes_through():
    "suggest_lrs gives each method the sliced curve and nothing else"
    kind, lrs, losses = next(c for c in CURVES if c[0] == 'finder_like' and len(c[1]) >= 60)
    res = suggest_lrs(lrs, losses, skip_start=len(lrs) // 10, skip_end=5)
    sl = slice(len(lrs) // 10, len(lrs) - 5)
    for m, v in res.items():
        ref = run_reference(m, lrs[sl], losses[sl])
        assert v is None or v == ref, (m, v, ref)
