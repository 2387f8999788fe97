"""minires.nn against torch.nn: parameter/buffer/state-dict names and order, loading torch's weights
(identical outputs and running statistics), BatchNorm2d's modes, load_state_dict's checks, train/eval,
zero_grad, dtype casts, and the default initialization."""
import math

import numpy as np
import pytest

import minires
from minires import nn


def _custom_class(tnn, make):
    """A module with its own parameter and buffer registered between sub-modules, in framework tnn
    (minires.nn or torch.nn); make(array) builds that framework's tensor."""

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(4)
            self.scale = tnn.Parameter(make(np.full(4, 0.5)))
            self.register_buffer("offset", make(np.arange(4.0)))
            self.shortcut = tnn.Sequential(tnn.Conv2d(3, 4, 1, stride=2), tnn.BatchNorm2d(4))
            self.conv2 = tnn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.head = tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(4, 3))

        def forward(self, x):
            h = self.conv1(x)
            h = self.bn1(h).relu() * self.scale.reshape(1, 4, 1, 1) + self.offset.reshape(1, 4, 1, 1)
            return self.head(self.conv2(h) + self.shortcut(x))

    return Block()


def _sequential(tnn):
    return tnn.Sequential(
        tnn.Conv2d(3, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3, stride=2, padding=1), tnn.BatchNorm2d(6), tnn.ReLU(), tnn.AvgPool2d(2),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(6, 5))


def _pair(kind):
    """The same network in minires and torch (float64), minires loaded from torch's state dict."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    if kind == "sequential":
        ours, theirs = _sequential(nn), _sequential(torch.nn)
    else:
        ours = _custom_class(nn, minires.tensor)
        theirs = _custom_class(torch.nn, torch.tensor)
    theirs = theirs.double()
    ours.double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs, torch


KINDS = ["sequential", "custom"]


def _input(seed=0):
    return np.random.default_rng(seed).standard_normal((4, 3, 8, 8))


@pytest.mark.parametrize("kind", KINDS)
def test_names_and_order_match_torch(kind):
    ours, theirs, _ = _pair(kind)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    assert [k for k, _ in ours.named_buffers()] == [k for k, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    assert [b.shape for b in ours.buffers()] == [tuple(b.shape) for b in theirs.buffers()]
    assert [k for k, _ in ours.named_modules()] == [k for k, _ in theirs.named_modules()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in ours.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_weights_give_torchs_outputs_in_eval_and_train_mode(kind):
    ours, theirs, torch = _pair(kind)
    for p, q in zip(ours.state_dict().values(), theirs.state_dict().values()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # first train mode, which moves the running statistics, then eval mode, which uses them
    for mode, seed in (("train", 1), ("train", 2), ("eval", 3)):
        getattr(ours, mode)(), getattr(theirs, mode)()
        x = _input(seed)
        xt = torch.tensor(x, requires_grad=True)
        y, yt = ours(minires.tensor(x)), theirs(xt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        for (name, b), bt in zip(ours.named_buffers(), theirs.buffers()):
            np.testing.assert_allclose(b.numpy(), bt.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    # and the gradients of every parameter after a train-mode backward
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    x = _input(4)
    (ours(minires.tensor(x)) ** 2).sum().backward()
    (theirs(torch.tensor(x)) ** 2).sum().backward()
    for (name, p), pt in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm2d_modes_match_torch(momentum, track, affine, relu):
    """Every mode against torch; relu=True (the fused call, bn.fused(x)) against torch.relu(bn(x))."""
    torch = pytest.importorskip("torch")
    kwargs = dict(momentum=momentum, track_running_stats=track, affine=affine)
    ours, theirs = nn.BatchNorm2d(3, **kwargs).double(), torch.nn.BatchNorm2d(3, **kwargs).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if affine:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
            theirs.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(2))
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for step in range(4):
        mode = "eval" if step == 3 else "train"
        getattr(ours, mode)(), getattr(theirs, mode)()
        x = np.random.default_rng(step).standard_normal((5, 3, 4, 4)) * (step + 1) + step
        expected = theirs(torch.tensor(x))
        np.testing.assert_allclose((ours.fused(minires.tensor(x)) if relu else ours(minires.tensor(x))).numpy(),
                                   (torch.relu(expected) if relu else expected).detach().numpy(), rtol=1e-10, atol=1e-10)
        for (name, b), bt in zip(ours.state_dict().items(), theirs.state_dict().values()):
            np.testing.assert_allclose(b.numpy(), bt.numpy(), rtol=1e-12, atol=1e-14, err_msg=f"step {step}: {name}")


def test_batchnorm2d_initial_state():
    bn = nn.BatchNorm2d(5)
    expected = {"weight": np.ones(5), "bias": np.zeros(5), "running_mean": np.zeros(5), "running_var": np.ones(5)}
    for name, value in expected.items():
        t = getattr(bn, name)
        assert t.dtype == np.float32
        np.testing.assert_array_equal(t.numpy(), value)
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == np.int64


# --- load_state_dict's checks ----------------------------------------------------------------

def _snapshot(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_strict_load_reports_every_problem_at_once_and_changes_nothing():
    model = _sequential(nn)
    before = _snapshot(model)
    bad = {k: np.zeros(v.shape) for k, v in before.items()}
    del bad["1.running_var"], bad["10.bias"]
    bad["10.weight"] = np.zeros((5, 7))
    bad["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    for text in ("1.running_var", "10.bias", "extra.weight", "10.weight", "(5, 6)", "(5, 7)"):
        assert text in message
    after = _snapshot(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_shape_mismatch_raises_even_when_not_strict():
    model = nn.Linear(3, 2)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"weight.*\(2, 3\).*\(3, 2\)"):
        model.load_state_dict({"weight": np.zeros((3, 2)), "bias": np.ones(2)}, strict=False)
    np.testing.assert_array_equal(model.bias.numpy(), before["bias"])


def test_non_strict_load_returns_missing_and_unexpected_keys_like_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = _sequential(nn), _sequential(torch.nn)
    partial = theirs.state_dict()  # keeps torch's version metadata: no legacy num_batches_tracked fill-in
    for k in [k for k in partial if k.startswith("1.")]:
        del partial[k]
    partial["head.weight"] = torch.zeros(2)
    result = ours.load_state_dict({k: v.numpy() for k, v in partial.items()}, strict=False)
    expected = theirs.load_state_dict(partial, strict=False)
    assert result.missing_keys == expected.missing_keys and result.unexpected_keys == expected.unexpected_keys
    missing, unexpected = result
    assert missing == ["1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert unexpected == ["head.weight"]
    np.testing.assert_array_equal(ours[10].weight.numpy(), theirs[10].weight.detach().numpy().astype(np.float32))


def test_load_casts_to_the_parameters_dtype_and_copies():
    model = nn.Linear(2, 2)
    weight = np.arange(4.0).reshape(2, 2)
    model.load_state_dict({"weight": weight, "bias": minires.tensor(np.ones(2))})
    assert model.weight.dtype == np.float32
    weight[0, 0] = 9.0
    np.testing.assert_array_equal(model.weight.numpy(), [[0, 1], [2, 3]])


# --- modes, gradients, dtypes -----------------------------------------------------------------

def test_train_and_eval_propagate():
    model = _custom_class(nn, minires.tensor)
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not model.head[2].training


def test_zero_grad():
    model = nn.Linear(3, 2)
    model(minires.tensor(np.ones((4, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("cast", [lambda m: m.to(np.float64), lambda m: m.double()], ids=["to", "double"])
def test_dtype_cast_keeps_parameter_identity(cast):
    model = _sequential(nn)
    params, buffers = list(model.parameters()), list(model.buffers())
    optimizer = minires.optim.SGD(model.parameters(), lr=0.1)
    assert cast(model) is model
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert {b.dtype for b in model.buffers()} == {np.dtype(np.float64), np.dtype(np.int64)}
    assert all(a is b for a, b in zip(buffers, model.buffers()))
    # the optimizer made before the cast still updates the model's parameters
    y = model(minires.tensor(_input()))
    assert y.dtype == np.float64
    y.sum().backward()
    before = model[10].bias.numpy()
    optimizer.step()
    np.testing.assert_allclose(model[10].bias.numpy(), before - 0.1 * 4)  # d sum / d bias = batch size
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_layers_accept_a_dtype():
    assert nn.Conv2d(2, 3, 3, dtype=np.float64).weight.dtype == np.float64
    assert nn.Linear(2, 3, dtype=np.float64).bias.dtype == np.float64
    assert nn.BatchNorm2d(2, dtype=np.float64).running_var.dtype == np.float64


# --- initialization ------------------------------------------------------------------------------

@pytest.mark.parametrize("make,fan_in", [(lambda: nn.Conv2d(16, 64, 3), 16 * 9),
                                         (lambda: nn.Conv2d(16, 64, 3, groups=4), 4 * 9),
                                         (lambda: nn.Linear(200, 300), 200)], ids=["conv", "grouped-conv", "linear"])
def test_default_init_is_uniform_within_one_over_sqrt_fan_in(make, fan_in):
    minires.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert w.dtype == b.dtype == np.float32
    for values in (w, b):
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.9 * bound  # spread over the whole interval
    # U(-bound, bound) has variance bound^2 / 3 and mean 0
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.05
    assert abs(w.mean()) < 0.05 * bound


def test_manual_seed_makes_init_reproducible():
    def weights(seed):
        minires.manual_seed(seed)
        return [p.numpy() for p in _sequential(nn).parameters()]

    first, again, other = weights(3), weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_kaiming_normal_fan_out_relu_std():
    minires.manual_seed(0)
    w = nn.Conv2d(32, 64, 3, bias=False).weight
    assert nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu") is w
    std = math.sqrt(2.0) / math.sqrt(64 * 9)  # gain sqrt(2), fan_out = out_channels * kh * kw
    assert abs(w.numpy().std() / std - 1) < 0.03
    assert abs(w.numpy().mean()) < 0.03 * std
    assert w.dtype == np.float32


def test_constant_initializers():
    bn = nn.BatchNorm2d(3)
    nn.init.zeros_(bn.weight)
    nn.init.constant_(bn.bias, 0.25)
    np.testing.assert_array_equal(bn.weight.numpy(), np.zeros(3))
    np.testing.assert_array_equal(bn.bias.numpy(), np.full(3, 0.25))
