"""Drop-in compatibility with `torch.optim`: `SGD`, `Adam` and `AdamW` take every argument of the installed torch
optimizer, follow torch's rules for a tensor `lr`, give the same bits with one, load torch's state dicts (and
continue exactly as torch would), and refuse what they cannot honour, in the constructor, in `add_param_group` and in
`load_state_dict`, which then changes nothing."""
import copy
import inspect
import io

import pytest
import torch
from torch import nn

from adamw_course.adam import Adam
from adamw_course.adamw import AdamW, param_groups
from adamw_course.sgd import SGD

PAIRS = {'SGD': (SGD, torch.optim.SGD), 'Adam': (Adam, torch.optim.Adam), 'AdamW': (AdamW, torch.optim.AdamW)}
UNSUPPORTED = {'SGD': ['differentiable', 'fused'], 'Adam': ['capturable', 'differentiable', 'fused'],
               'AdamW': ['capturable', 'differentiable', 'fused']}
SHAPES = [(3, 4), (5,), (), (2, 3, 2)]


def torch_defaults(torch_cls) -> dict:
    return {k: p.default for k, p in inspect.signature(torch_cls).parameters.items() if k != 'params'}


def leaf(*shape): return torch.zeros(shape or (2,), requires_grad=True)


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


def groups(params, **group2):
    return [{'params': params[:2]}, {'params': params[2:], **group2}]


def roundtrip(sd: dict) -> dict:
    "The state dict as written to a file and read back: no tensor shared with the optimizer that made it."
    buf = io.BytesIO(); torch.save(sd, buf); buf.seek(0)
    return torch.load(buf, weights_only=True)


def state_tensors(opt):
    return [t for g in opt.param_groups for p in g['params'] for _, t in sorted(opt.state[p].items())]


def assert_bitwise(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys): torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


def assert_same_state_dict(a: dict, b: dict):
    assert len(a['param_groups']) == len(b['param_groups'])
    for ga, gb in zip(a['param_groups'], b['param_groups']):
        assert ga.keys() == gb.keys()
        for k in ga:
            if torch.is_tensor(ga[k]): assert torch.equal(ga[k], gb[k]), k
            else: assert ga[k] == gb[k], k
    assert a['state'].keys() == b['state'].keys()
    for k in a['state']:
        assert a['state'][k].keys() == b['state'][k].keys()
        for n in a['state'][k]: assert torch.equal(a['state'][k][n], b['state'][k][n]), (k, n)


def train(opt, params, n_steps, seed, lr_change=None):
    "`n_steps` of random gradients from `seed`; `lr_change(step)` may change hyperparameters before a step."
    gen = torch.Generator().manual_seed(seed)
    for step in range(n_steps):
        for p in params: p.grad = torch.randn(p.shape, generator=gen)
        if lr_change: lr_change(step)
        opt.step()


def settings(name):
    "Settings that exercise every part of the step: momentum/nesterov for SGD, amsgrad and decay for Adam/AdamW."
    return dict(momentum=0.9, nesterov=True, weight_decay=1e-2) if name == 'SGD' else dict(weight_decay=1e-2, amsgrad=True)


# --- arguments ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', PAIRS)
def test_every_torch_argument_is_accepted_at_its_default(name):
    ours_cls, torch_cls = PAIRS[name]
    tdef = torch_defaults(torch_cls)
    ours_sig = inspect.signature(ours_cls).parameters
    for k, v in tdef.items():
        assert k in ours_sig and ours_sig[k].default == v, k              # the same name, the same default
        ours_cls([leaf()], **{k: v})                                      # each one alone, at torch's default
    opt = ours_cls([leaf()], **tdef)                                      # and all of them together
    assert {k: opt.defaults[k] for k in tdef} == {k: torch_cls([leaf()]).defaults[k] for k in tdef}


def test_the_issue_examples():
    Adam([leaf()], fused=None); Adam([leaf()], capturable=False, differentiable=False)
    SGD([leaf()], fused=None, differentiable=False); SGD([leaf()], fused=False)
    AdamW([leaf()], fused=None, capturable=False, differentiable=False)


@pytest.mark.parametrize('name,key', [(n, k) for n, ks in UNSUPPORTED.items() for k in ks])
def test_unsupported_options_are_refused_everywhere(name, key):
    ours_cls, _ = PAIRS[name]
    torch_name = f'torch.optim.{name}({key}=True)'
    with pytest.raises(ValueError, match=torch_name.replace('(', r'\(').replace(')', r'\)')): ours_cls([leaf()], **{key: True})
    opt = ours_cls([leaf()])
    with pytest.raises(ValueError, match=key): opt.add_param_group({'params': [leaf(3)], key: True})
    assert len(opt.param_groups) == 1
    sd = opt.state_dict(); sd['param_groups'][0][key] = True
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=f'param group 0.*{key}=True'): opt.load_state_dict(sd)
    assert_same_state_dict(opt.state_dict(), before)


def test_messages_are_one_line():
    for make in (lambda: Adam([leaf()], fused=True), lambda: SGD([leaf()], differentiable=True),
                 lambda: Adam([leaf()], lr=torch.tensor(1e-3), foreach=True), lambda: Adam([leaf()], lr=torch.ones(2))):
        with pytest.raises(ValueError) as err: make()
        assert '\n' not in str(err.value)


def test_tensor_betas_are_refused_with_a_pointer_to_torch():
    with pytest.raises(ValueError, match='tensor betas.*torch.optim.Adam'):
        Adam([leaf()], betas=(torch.tensor(0.9), torch.tensor(0.999)))


# --- tensor lr: torch's rules, torch's bits -----------------------------------------------------------------------

LR_CASES = [(torch.tensor(1e-3), None), (torch.tensor(1e-3), False), (torch.tensor(1e-3), True),
            (torch.tensor([1e-3]), None), (torch.tensor([1e-3]), True), (torch.tensor([1e-3, 1e-2]), None),
            (torch.tensor([1e-3, 1e-2]), False), (torch.tensor(-1e-3), None), (torch.tensor([[1e-3]]), False)]


@pytest.mark.parametrize('name', PAIRS)
@pytest.mark.parametrize('lr,foreach', LR_CASES)
def test_tensor_lr_is_accepted_exactly_when_torch_accepts_it(name, lr, foreach):
    ours_cls, torch_cls = PAIRS[name]
    def outcome(cls):
        try: cls([leaf()], lr=lr.clone(), foreach=foreach)
        except ValueError: return 'ValueError'
        return 'ok'
    assert outcome(ours_cls) == outcome(torch_cls)


@pytest.mark.parametrize('name', PAIRS)
@pytest.mark.parametrize('foreach', [None, False])
@pytest.mark.parametrize('lr_shape', [(), (1,)])
def test_tensor_lr_gives_torch_bits(name, foreach, lr_shape):
    "The same tensor lr (changed in place halfway, as a scheduler for tensor lrs does) gives torch's parameters and state."
    ours_cls, torch_cls = PAIRS[name]
    runs = []
    for cls in (ours_cls, torch_cls):
        params, lr = make_params(), torch.full(lr_shape, 3e-2)
        opt = cls(groups(params, weight_decay=0.1), lr=lr, foreach=foreach, **settings(name))
        train(opt, params, 8, seed=1, lr_change=lambda step: lr.mul_(0.5) if step == 4 else None)
        runs.append([p.detach() for p in params] + state_tensors(opt))
    assert_bitwise(*runs)


def test_tensor_lr_group_added_later_and_written_in_place():
    params = make_params()
    lr = torch.tensor(0.1)
    opt = SGD(params[:2], lr=lr)
    opt.add_param_group({'params': params[2:], 'lr': torch.tensor(0.01)})
    assert opt.param_groups[0]['lr'] is lr
    with pytest.raises(ValueError, match='one element'): opt.add_param_group({'params': [leaf()], 'lr': torch.ones(3)})


# --- state dicts --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', PAIRS)
@pytest.mark.parametrize('lr_kind', ['float', 'tensor'])
@pytest.mark.parametrize('foreach', [None, False])
def test_torch_state_dict_loads_and_continues_like_torch(name, lr_kind, foreach):
    ours_cls, torch_cls = PAIRS[name]
    lr = 2e-2 if lr_kind == 'float' else torch.tensor(2e-2)
    p_torch = make_params()
    t_opt = torch_cls(groups(p_torch, lr=1e-2 if lr_kind == 'float' else torch.tensor(1e-2)), lr=lr,
                      foreach=foreach, **settings(name))
    train(t_opt, p_torch, 5, seed=1)
    p_ours = [p.detach().clone().requires_grad_() for p in p_torch]
    o_opt = ours_cls(groups(p_ours), lr=0.5)                        # other settings: the state dict must replace them
    o_opt.load_state_dict(roundtrip(t_opt.state_dict()))
    for g in o_opt.param_groups: assert torch.is_tensor(g['lr']) == (lr_kind == 'tensor')
    train(t_opt, p_torch, 5, seed=2); train(o_opt, p_ours, 5, seed=2)
    assert_bitwise([p.detach() for p in p_ours] + state_tensors(o_opt), [p.detach() for p in p_torch] + state_tensors(t_opt))


@pytest.mark.parametrize('name', PAIRS)
def test_our_state_dict_loads_into_torch(name):
    ours_cls, torch_cls = PAIRS[name]
    p_ours = make_params()
    o_opt = ours_cls(groups(p_ours, lr=1e-2), lr=2e-2, **settings(name))
    train(o_opt, p_ours, 5, seed=1)
    p_torch = [p.detach().clone().requires_grad_() for p in p_ours]
    t_opt = torch_cls(groups(p_torch), lr=0.5)
    t_opt.load_state_dict(roundtrip(o_opt.state_dict()))
    train(t_opt, p_torch, 5, seed=2); train(o_opt, p_ours, 5, seed=2)
    assert_bitwise([p.detach() for p in p_ours], [p.detach() for p in p_torch])


BAD_GROUP_CHANGES = {                       # (optimizers it applies to, change to group 1, expected text)
    'negative lr': (PAIRS, dict(lr=-1e-3), 'lr=-0.001'),
    'nan lr': (PAIRS, dict(lr=float('nan')), 'lr=nan'),
    'two-element tensor lr': (PAIRS, dict(lr=torch.tensor([1e-3, 1e-3])), 'one element'),
    'differentiable': (PAIRS, dict(differentiable=True), 'differentiable=True'),
    'fused': (PAIRS, dict(fused=True), 'fused=True'),
    'capturable': (['Adam', 'AdamW'], dict(capturable=True), 'capturable=True'),
    'negative weight decay': (PAIRS, dict(weight_decay=-1.), 'weight_decay=-1.0'),
    'beta of 1': (['Adam', 'AdamW'], dict(betas=(0.9, 1.0)), r'betas\[1\]=1.0'),
    'eps 0': (['Adam', 'AdamW'], dict(eps=0.), 'eps=0.0'),
    'tensor lr with foreach=True': (['Adam', 'AdamW'], dict(lr=torch.tensor(1e-3), foreach=True), 'foreach=True'),
    'negative momentum': (['SGD'], dict(momentum=-0.9), 'momentum=-0.9'),
    'nesterov without momentum': (['SGD'], dict(nesterov=True, momentum=0.), 'nesterov=True'),
    'no lr': (PAIRS, dict(lr=None), "no 'lr'"),
}


@pytest.mark.parametrize('name,case', [(n, c) for c, (names, _, _) in BAD_GROUP_CHANGES.items() for n in names])
@pytest.mark.parametrize('source', ['torch', 'ours'])
def test_bad_state_dict_raises_and_changes_nothing(name, case, source):
    ours_cls, torch_cls = PAIRS[name]
    _, change, text = BAD_GROUP_CHANGES[case]
    p_src = make_params()
    src = (torch_cls if source == 'torch' else ours_cls)(groups(p_src), lr=1e-2, **settings(name))
    train(src, p_src, 3, seed=1)
    bad = roundtrip(src.state_dict())
    for k, v in change.items():                                     # group 0 stays good: the check is all-or-nothing
        if v is None: del bad['param_groups'][1][k]
        else: bad['param_groups'][1][k] = v
    params = make_params(seed=5)
    twin_params = make_params(seed=5)
    opt, twin = (ours_cls(groups(ps, lr=3e-3), lr=1e-3, **settings(name)) for ps in (params, twin_params))
    train(opt, params, 2, seed=3); train(twin, twin_params, 2, seed=3)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=f'param group 1.*{text}'): opt.load_state_dict(bad)
    assert_same_state_dict(opt.state_dict(), before)
    train(opt, params, 2, seed=4); train(twin, twin_params, 2, seed=4)     # and it trains on as if nothing happened
    assert_bitwise([p.detach() for p in params], [p.detach() for p in twin_params])


def test_loaded_options_missing_from_old_state_dicts_are_filled_in():
    opt = Adam([leaf()])
    sd = opt.state_dict()
    for k in ('capturable', 'differentiable', 'fused', 'foreach', 'maximize', 'decoupled_weight_decay', 'bias_correction'):
        del sd['param_groups'][0][k]
    opt.load_state_dict(sd)
    g = opt.param_groups[0]
    assert (g['capturable'], g['differentiable'], g['fused'], g['bias_correction']) == (False, False, None, True)


def test_adamw_loading_an_adam_state_dict_stays_decoupled():
    opt = AdamW([leaf()])
    opt.load_state_dict(roundtrip(torch.optim.Adam([leaf()], lr=torch.tensor(1e-3)).state_dict()))
    assert opt.param_groups[0]['decoupled_weight_decay'] is True and torch.is_tensor(opt.param_groups[0]['lr'])


@pytest.mark.parametrize('decoupled', [True, False])
def test_a_missing_option_takes_the_loading_optimizers_own_value(decoupled):
    """torch < 2.7 wrote AdamW state dicts without `decoupled_weight_decay`. Loaded into `Adam(decoupled_weight_decay=
    True)`, such a dict must keep the decay decoupled (and continue like torch's AdamW), not fall back to L2."""
    p_torch = make_params()
    t_opt = torch.optim.AdamW(p_torch, lr=1e-2, weight_decay=0.1, foreach=False)
    train(t_opt, p_torch, 3, seed=1)
    sd = roundtrip(t_opt.state_dict())
    for g in sd['param_groups']: g.pop('decoupled_weight_decay', None)          # as an older torch wrote it
    p_ours = [p.detach().clone().requires_grad_() for p in p_torch]
    o_opt = Adam(p_ours, decoupled_weight_decay=decoupled)
    o_opt.load_state_dict(sd)
    assert all(g['decoupled_weight_decay'] is decoupled for g in o_opt.param_groups)
    if decoupled:                                                                 # then it is torch's AdamW, bit for bit
        train(t_opt, p_torch, 3, seed=2); train(o_opt, p_ours, 3, seed=2)
        assert_bitwise([p.detach() for p in p_ours], [p.detach() for p in p_torch])


# --- param_groups(weight_decay=None) ------------------------------------------------------------------------------

def test_param_groups_without_a_weight_decay_leave_it_to_the_optimizer():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    gs = param_groups(net, None)
    assert ['weight_decay' in g for g in gs] == [False, True] and gs[1]['weight_decay'] == 0. and gs[1]['no_decay']
    assert [g['weight_decay'] for g in AdamW(param_groups(net, None), lr=1e-3).param_groups] == [1e-2, 0.]
    assert [g['weight_decay'] for g in torch.optim.AdamW(param_groups(net, None), weight_decay=0.3).param_groups] == [0.3, 0.]
    for wd_bn_bias in (False, True):
        opt = SGD(param_groups(net, None, no_decay_bias_norm=not wd_bn_bias), lr=0.1, weight_decay=1e-4)
        assert [g['weight_decay'] for g in opt.param_groups] == ([1e-4] if wd_bn_bias else [1e-4, 0.])
    assert param_groups(net, 0.1)[0]['weight_decay'] == 0.1
    with pytest.raises(ValueError, match='weight_decay'): param_groups(net, -1.)
