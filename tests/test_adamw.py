"""minires.optim.AdamW against torch.optim.AdamW step by step (float64), its state_dict round trip
(through minires.save/load) and its checks."""
import numpy as np
import pytest

import minires
from minires.nn import Parameter
from minires.optim import AdamW

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (4,), (2, 3, 2, 2)]
CONFIGS = {
    "defaults": dict(),
    "lr-betas": dict(lr=0.05, betas=(0.8, 0.99)),
    "no-decay": dict(lr=0.01, weight_decay=0.0),
    "strong-decay-eps": dict(lr=0.02, weight_decay=0.5, eps=1e-3),
    "amsgrad": dict(lr=0.03, amsgrad=True),
    "groups": dict(lr=0.01, group=dict(lr=0.1, weight_decay=0.0, amsgrad=True)),
}


def _initial():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s) for s in SHAPES]


def _gradient(step, i, value):
    """A deterministic gradient depending on the parameter's current value; it changes sign often,
    so that amsgrad's running maximum matters."""
    noise = np.random.default_rng(100 * step + i).standard_normal(value.shape)
    return np.sin(3 * value) + (-1) ** step * noise


def _groups(params, config):
    group = config.get("group")
    return params if group is None else [{"params": params[:-1]}, {"params": params[-1:], **group}]


def _options(config):
    return {k: v for k, v in config.items() if k != "group"}


def _run(optimizer, params, steps, first=0):
    """Steps first..first+steps-1; parameter 1 gets no gradient on odd steps (it is then skipped)."""
    for step in range(first, first + steps):
        optimizer.zero_grad()
        for i, p in enumerate(params):
            if i != 1 or step % 2 == 0:
                if isinstance(p, minires.Tensor):
                    p.grad = minires.tensor(_gradient(step, i, p.numpy()))
                else:
                    p.grad = torch.tensor(_gradient(step, i, p.detach().numpy()))
        optimizer.step()


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_torch(name):
    config = CONFIGS[name]
    ours = [Parameter(v) for v in _initial()]
    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in _initial()]
    opt = AdamW(_groups(ours, config), **_options(config))
    ref = torch.optim.AdamW(_groups(theirs, config), **_options(config))
    for step in range(6):
        _run(opt, ours, 1, step)
        _run(ref, theirs, 1, step)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_continues_exactly(tmp_path):
    """3 steps, save, load into a fresh optimizer over copies of the parameters, 3 more steps: the
    same as 6 steps straight."""
    config = CONFIGS["amsgrad"]
    straight = [Parameter(v) for v in _initial()]
    _run(AdamW(straight, **config), straight, 6)

    first = [Parameter(v) for v in _initial()]
    opt = AdamW(first, **config)
    _run(opt, first, 3)
    minires.save({"optimizer": opt.state_dict(), "params": [p.data for p in first]}, tmp_path / "opt.npz")
    saved = minires.load(tmp_path / "opt.npz")
    resumed = [Parameter(v) for v in saved["params"]]
    opt2 = AdamW(resumed, lr=123.0)  # the state dict brings the hyperparameters back
    opt2.load_state_dict(saved["optimizer"])
    assert opt2.param_groups[0]["lr"] == config["lr"]
    _run(opt2, resumed, 3, first=3)
    for p, q in zip(resumed, straight):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_layout_matches_torch():
    ours = [Parameter(v) for v in _initial()]
    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in _initial()]
    opt, ref = AdamW(ours, amsgrad=True), torch.optim.AdamW(theirs, amsgrad=True)
    _run(opt, ours, 2)
    _run(ref, theirs, 2)
    sd, rsd = opt.state_dict(), ref.state_dict()
    assert sd["state"].keys() == rsd["state"].keys()
    for i in sd["state"]:
        assert set(sd["state"][i]) == set(rsd["state"][i])
        assert sd["state"][i]["step"] == rsd["state"][i]["step"].item()
        for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_allclose(sd["state"][i][k], rsd["state"][i][k].numpy(), rtol=1e-12, atol=1e-15)
    assert sd["param_groups"][0]["params"] == rsd["param_groups"][0]["params"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1.0), "lr"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(betas=(0.9, 1.0)), "betas"),
    (dict(betas=(0.9,)), "betas"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=f"AdamW.*{match}"):
        AdamW([Parameter(np.zeros(2))], **kwargs)
