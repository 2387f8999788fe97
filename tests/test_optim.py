"""minires.optim.SGD against torch.optim.SGD step by step, its state_dict round trip, and its checks."""
import numpy as np
import pytest

import minires
from minires.nn import Parameter
from minires.optim import SGD

SHAPES = [(3, 4), (4,), (2, 3, 2, 2)]
STEPS = 5


def _initial(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _gradient(step, i, value):
    """A deterministic gradient for parameter i at a step, depending on its current value."""
    noise = np.random.default_rng(100 * step + i).standard_normal(value.shape)
    return np.sin(value) + 0.3 * noise


def _groups(params, config):
    """Plain parameter list, or two groups (the last parameter alone) with the group's overrides."""
    group = config.get("group")
    return params if group is None else [{"params": params[:-1]}, {"params": params[-1:], **group}]


def _run(optimizer, params, set_grad, steps, first=0):
    for step in range(first, first + steps):
        optimizer.zero_grad()
        for i, p in enumerate(params):
            if i != 1 or step % 2 == 0:  # parameter 1 gets no gradient every other step: it is skipped
                set_grad(p, _gradient(step, i, _value(p)))
        optimizer.step()


def _value(p):
    return p.numpy() if isinstance(p, minires.Tensor) else p.detach().numpy()


def _set_ours(p, g):
    p.grad = minires.tensor(g)


def _set_theirs(p, g):
    import torch
    p.grad = torch.tensor(g)


CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "momentum-dampening": dict(lr=0.05, momentum=0.8, dampening=0.5),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight-decay": dict(lr=0.1, weight_decay=0.01),
    "weight-decay-momentum": dict(lr=0.1, momentum=0.9, weight_decay=5e-4),
    "groups": dict(lr=0.1, momentum=0.9, group=dict(lr=0.01, weight_decay=0.1)),
    "groups-nesterov": dict(lr=0.2, momentum=0.5, nesterov=True, group=dict(lr=0.5, momentum=0.9)),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_sgd_matches_torch(name):
    torch = pytest.importorskip("torch")
    config = dict(CONFIGS[name])
    kwargs = {k: v for k, v in config.items() if k != "group"}
    ours = [Parameter(v) for v in _initial()]
    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in _initial()]
    opt, ref = SGD(_groups(ours, config), **kwargs), torch.optim.SGD(_groups(theirs, config), **kwargs)
    for step in range(STEPS):
        _run(opt, ours, _set_ours, 1, first=step)
        _run(ref, theirs, _set_theirs, 1, first=step)
        for i, (p, q) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=f"step {step}, parameter {i}")
    assert all(p.dtype == np.float64 for p in ours)


def test_state_dict_layout_matches_torch():
    torch = pytest.importorskip("torch")
    config = CONFIGS["groups"]
    ours = [Parameter(v) for v in _initial()]
    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in _initial()]
    opt = SGD(_groups(ours, config), lr=0.1, momentum=0.9)
    ref = torch.optim.SGD(_groups(theirs, config), lr=0.1, momentum=0.9)
    _run(opt, ours, _set_ours, 2)
    _run(ref, theirs, _set_theirs, 2)
    state, expected = opt.state_dict(), ref.state_dict()
    assert sorted(state["state"]) == sorted(expected["state"]) == [0, 1, 2]
    for i, s in expected["state"].items():
        np.testing.assert_allclose(state["state"][i]["momentum_buffer"], s["momentum_buffer"].numpy(), rtol=1e-12)
    assert [g["params"] for g in state["param_groups"]] == [g["params"] for g in expected["param_groups"]]
    for g, e in zip(state["param_groups"], expected["param_groups"]):
        assert {k: g[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov")} == \
               {k: e[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov")}


def test_state_dict_round_trip_continues_identically():
    config = CONFIGS["groups-nesterov"]
    kwargs = dict(lr=0.2, momentum=0.5, nesterov=True)
    params = [Parameter(v) for v in _initial()]
    opt = SGD(_groups(params, config), **kwargs)
    _run(opt, params, _set_ours, 3)
    saved = opt.state_dict()
    copies = [Parameter(p.numpy()) for p in params]
    # a fresh optimizer, made with other settings, takes the saved groups' settings and state
    restored = SGD(_groups(copies, {"group": {}}), lr=1.0)
    restored.load_state_dict(saved)
    _run(opt, params, _set_ours, 3, first=3)
    _run(restored, copies, _set_ours, 3, first=3)
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    assert restored.param_groups[1]["lr"] == 0.5 and restored.param_groups[1]["momentum"] == 0.9


def test_state_dict_is_a_snapshot():
    params = [Parameter(v) for v in _initial()]
    opt = SGD(params, lr=0.1, momentum=0.9)
    _run(opt, params, _set_ours, 1)
    saved = opt.state_dict()
    buffer = saved["state"][0]["momentum_buffer"].copy()
    _run(opt, params, _set_ours, 2, first=1)
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], buffer)


def test_load_state_dict_rejects_other_groups():
    params = [Parameter(v) for v in _initial()]
    saved = SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="SGD.load_state_dict: the parameter groups"):
        SGD(params[:2], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="SGD.load_state_dict: the parameter groups"):
        SGD(_groups(params, {"group": {}}), lr=0.1).load_state_dict(saved)


def test_zero_grad():
    params = [Parameter(v) for v in _initial()]
    opt = SGD(params, lr=0.1)
    for p in params:
        p.grad = minires.tensor(np.ones(p.shape))
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_float32_parameters_stay_float32():
    p = Parameter(np.ones(3, np.float32))
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        p.grad = minires.tensor(np.full(3, 0.5, np.float32))
        opt.step()
    assert p.dtype == np.float32 and opt.state[p]["momentum_buffer"].dtype == np.float32


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "lr"),
    (dict(lr=0.1, momentum=-0.5), "momentum"),
    (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "nesterov"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
])
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"SGD.*{match}"):
        SGD([Parameter(np.ones(2))], **kwargs)


def test_bad_parameter_lists_raise():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="SGD: a parameter appears in more than one group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
