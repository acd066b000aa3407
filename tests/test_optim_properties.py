"""Property tests: `adamw_course`'s SGD and Adam give the same numbers as `torch.optim`, for random settings
(also with a tensor lr).

On CPU our optimizers run the same operations in the same order as torch's, so the tests ask for identical bits
(`rtol=0, atol=0`), which is stronger than the 1e-6 relative tolerance the project promises."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from adamw_course.adam import Adam
from adamw_course.sgd import SGD

shapes_st = st.lists(st.lists(st.integers(1, 5), max_size=3).map(tuple), min_size=1, max_size=4)  # () is a scalar
seed_st = st.integers(0, 2**31 - 1)
lrs_st = st.lists(st.floats(1e-4, 0.5), min_size=1, max_size=4)        # the lr cycles through these, step by step
wd_st = st.one_of(st.just(0.0), st.floats(1e-5, 0.5))


def train(make_opt, shapes, seed, lrs, n_steps=6, dtype=torch.float32):
    "Random params and gradients from `seed`; set every group's lr from `lrs` before each step; return params and optimizer."
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
    opt = make_opt(params)
    for step in range(n_steps):
        for p in params: p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        for group in opt.param_groups: group['lr'] = lrs[step % len(lrs)]
        opt.step()
    return [p.detach() for p in params], opt


def state_tensors(opt):
    return [t for g in opt.param_groups for p in g['params'] for _, t in sorted(opt.state[p].items())]


def assert_bitwise(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys): torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.9999),
       eps=st.floats(1e-10, 1e-3), wd=wd_st, amsgrad=st.booleans(), decoupled=st.booleans(), maximize=st.booleans(),
       foreach=st.booleans())
def test_adam_equals_torch(shapes, seed, lrs, beta1, beta2, eps, wd, amsgrad, decoupled, maximize, foreach):
    kw = dict(lr=lrs[0], betas=(beta1, beta2), eps=eps, weight_decay=wd, amsgrad=amsgrad, maximize=maximize, foreach=foreach)
    ours, o_opt = train(lambda ps: Adam(ps, decoupled_weight_decay=decoupled, **kw), shapes, seed, lrs)
    ref, r_opt = train(lambda ps: (torch.optim.AdamW if decoupled else torch.optim.Adam)(ps, **kw), shapes, seed, lrs)
    assert_bitwise(ours, ref)
    assert_bitwise(state_tensors(o_opt), state_tensors(r_opt))


def train_tensor_lr(make_opt, shapes, seed, lrs, n_steps=6):
    "Like `train`, with a one-element tensor lr that is written in place (`fill_`) before each step, as torch allows."
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    lr = torch.tensor(lrs[0])
    opt = make_opt(params, lr)
    for step in range(n_steps):
        for p in params: p.grad = torch.randn(p.shape, generator=gen)
        lr.fill_(lrs[step % len(lrs)])
        opt.step()
    return [p.detach() for p in params], opt


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.9999),
       wd=wd_st, amsgrad=st.booleans(), decoupled=st.booleans(), foreach=st.sampled_from([None, False]))
def test_adam_with_a_tensor_lr_equals_torch(shapes, seed, lrs, beta1, beta2, wd, amsgrad, decoupled, foreach):
    "A tensor lr is used in torch's float32 arithmetic (lr / bias correction, 1 - lr * wd): ours must give the same bits."
    kw = dict(betas=(beta1, beta2), weight_decay=wd, amsgrad=amsgrad, foreach=foreach)
    ours, o_opt = train_tensor_lr(lambda ps, lr: Adam(ps, lr=lr, decoupled_weight_decay=decoupled, **kw), shapes, seed, lrs)
    ref, r_opt = train_tensor_lr(lambda ps, lr: (torch.optim.AdamW if decoupled else torch.optim.Adam)(ps, lr=lr, **kw),
                                 shapes, seed, lrs)
    assert_bitwise(ours, ref)
    assert_bitwise(state_tensors(o_opt), state_tensors(r_opt))


@settings(max_examples=30, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, momentum=st.floats(0, 0.99), wd=wd_st,
       foreach=st.sampled_from([None, False, True]))
def test_sgd_with_a_tensor_lr_equals_torch(shapes, seed, lrs, momentum, wd, foreach):
    kw = dict(momentum=momentum, weight_decay=wd, foreach=foreach)
    ours, _ = train_tensor_lr(lambda ps, lr: SGD(ps, lr=lr, **kw), shapes, seed, lrs)
    ref, _ = train_tensor_lr(lambda ps, lr: torch.optim.SGD(ps, lr=lr, **kw), shapes, seed, lrs)
    assert_bitwise(ours, ref)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, momentum=st.one_of(st.just(0.0), st.floats(0.01, 0.99)),
       dampening=st.one_of(st.just(0.0), st.floats(0, 1)), nesterov=st.booleans(), wd=wd_st, maximize=st.booleans(),
       foreach=st.booleans())
def test_sgd_equals_torch(shapes, seed, lrs, momentum, dampening, nesterov, wd, maximize, foreach):
    if nesterov: momentum, dampening = max(momentum, 0.1), 0.0        # Nesterov needs momentum and no dampening
    kw = dict(lr=lrs[0], momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov,
              maximize=maximize, foreach=foreach)
    ours, o_opt = train(lambda ps: SGD(ps, **kw), shapes, seed, lrs)
    ref, r_opt = train(lambda ps: torch.optim.SGD(ps, **kw), shapes, seed, lrs)
    assert_bitwise(ours, ref)
    assert_bitwise(state_tensors(o_opt), state_tensors(r_opt))


class _TorchSGDDecoupled(torch.optim.SGD):
    "Reference for decoupled decay: `p *= 1 - lr*wd` by hand, then torch's SGD without weight decay."
    def __init__(self, params, weight_decay, **kw):
        super().__init__(params, **kw)
        self.wd = weight_decay

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g['params']:
                if p.grad is not None: p.mul_(1 - g['lr'] * self.wd)
        return super().step(closure)


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, momentum=st.floats(0, 0.99), wd=st.floats(1e-5, 0.5),
       nesterov=st.booleans(), foreach=st.booleans())
def test_sgd_decoupled_weight_decay(shapes, seed, lrs, momentum, wd, nesterov, foreach):
    if nesterov: momentum = max(momentum, 0.1)
    kw = dict(lr=lrs[0], momentum=momentum, nesterov=nesterov, foreach=foreach)
    ours, _ = train(lambda ps: SGD(ps, weight_decay=wd, decoupled_weight_decay=True, **kw), shapes, seed, lrs)
    ref, _ = train(lambda ps: _TorchSGDDecoupled(ps, weight_decay=wd, **kw), shapes, seed, lrs)
    assert_bitwise(ours, ref)


@settings(max_examples=30, deadline=None)
@given(shapes=shapes_st, seed=seed_st, lrs=lrs_st, beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.9999),
       wd=wd_st, foreach=st.booleans())
def test_adam_without_bias_correction(shapes, seed, lrs, beta1, beta2, wd, foreach):
    "No torch counterpart: compare with the uncorrected formulas, written out in float64."
    eps = 1e-8
    ours, _ = train(lambda ps: Adam(ps, lr=lrs[0], betas=(beta1, beta2), eps=eps, weight_decay=wd, bias_correction=False,
                                    foreach=foreach), shapes, seed, lrs, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    ps = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    ms, vs = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    for step in range(6):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in ps]
        lr = lrs[step % len(lrs)]
        for p, m, v, g in zip(ps, ms, vs, grads):
            g = g + wd * p
            m.copy_(beta1 * m + (1 - beta1) * g)
            v.copy_(beta2 * v + (1 - beta2) * g * g)
            p.sub_(lr * m / (v.sqrt() + eps))
    for o, e in zip(ours, ps): torch.testing.assert_close(o, e, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(['lr', 'eps', 'weight_decay', 'beta1', 'beta2', 'momentum']),
       bad=st.one_of(st.floats(max_value=-1e-12), st.just(float('nan')), st.just(float('inf')), st.just(-float('inf'))))
def test_bad_hyperparameters_raise(name, bad):
    p = [torch.zeros(2, requires_grad=True)]
    if name == 'momentum': make = lambda: SGD(p, momentum=bad)
    elif name.startswith('beta'): make = lambda: Adam(p, betas=(bad, 0.999) if name == 'beta1' else (0.9, bad))
    else: make = lambda: Adam(p, **{name: bad})
    with pytest.raises(ValueError) as err: make()
    assert ('betas' if name.startswith('beta') else name) in str(err.value) and repr(bad) in str(err.value)


@pytest.mark.parametrize('beta', [1.0, 1.5])
def test_beta_of_one_or_more_raises(beta):
    with pytest.raises(ValueError, match=r'betas\[1\]'): Adam([torch.zeros(1, requires_grad=True)], betas=(0.9, beta))


# The fast (foreach) and the reference (per-tensor) paths must agree exactly, also with mixed dtypes in one group
# (foreach ops run per (device, dtype) bucket) and with parameters that skip steps (per-parameter step counts).
PATH_CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2, decoupled_weight_decay=True, maximize=True)),
    (Adam, dict(lr=1e-2)),
    (Adam, dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    (Adam, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    (Adam, dict(lr=1e-2, betas=(0.95, 0.99), weight_decay=1e-2, bias_correction=False, amsgrad=True)),
]


def run_paths(make_opt, dtypes, n_steps=25):
    "Train params of several shapes and `dtypes` in two groups, some skipping steps; return params + state tensors."
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), (2, 3, 4), (7,), ()]
    params = [torch.randn(s, generator=gen).to(dt).requires_grad_() for s, dt in zip(shapes, dtypes)]
    opt = make_opt([{'params': params[:3]}, {'params': params[3:], 'lr': 5e-3}])
    for step in range(n_steps):
        for i, p in enumerate(params):
            p.grad = None if step % (i + 2) == 1 else torch.randn(p.shape, generator=gen).to(p.dtype)
        opt.step()
    return [p.detach() for p in params] + state_tensors(opt)


@pytest.mark.parametrize('opt_cls,kw', PATH_CONFIGS)
def test_foreach_and_per_tensor_paths_agree(opt_cls, kw):
    dtypes = [torch.float32, torch.float64, torch.float32, torch.float64, torch.float32]
    per_tensor = run_paths(lambda g: opt_cls(g, foreach=False, **kw), dtypes)
    assert_bitwise(run_paths(lambda g: opt_cls(g, foreach=True, **kw), dtypes), per_tensor)
    assert_bitwise(run_paths(lambda g: opt_cls(g, **kw), dtypes), per_tensor)        # the default is foreach


@pytest.mark.parametrize('opt_cls,kw', [c for c in PATH_CONFIGS if not c[1].get('decoupled_weight_decay') and 'bias_correction' not in c[1]])
@pytest.mark.parametrize('foreach', [True, False])
def test_bfloat16_matches_torch_path_for_path(opt_cls, kw, foreach):
    "In bfloat16 torch's own foreach and per-tensor paths round differently on CPU; each of ours matches torch's."
    ref_cls = {SGD: torch.optim.SGD, Adam: torch.optim.Adam}[opt_cls]
    dtypes = [torch.bfloat16, torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]
    assert_bitwise(run_paths(lambda g: opt_cls(g, foreach=foreach, **kw), dtypes),
                   run_paths(lambda g: ref_cls(g, foreach=foreach, **kw), dtypes))
