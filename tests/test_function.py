"""User-defined ops with minires.Function: forward/backward over arrays, ctx.save_for_backward,
ctx.needs_input_grad, non-tensor arguments, gradcheck, and the errors for a malformed backward."""
import numpy as np
import pytest

import minires


class Sigmoid(minires.Function):
    """1 / (1 + exp(-x));  d/dx = s (1 - s)."""

    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + np.exp(-x))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, g):
        s, = ctx.saved_tensors
        return g * s * (1 - s)


class ScaledProduct(minires.Function):
    """scale * a * sin(b) for tensors a, b (broadcast) and a Python number scale."""

    @staticmethod
    def forward(ctx, a, b, scale):
        ctx.save_for_backward(a, b)
        ctx.scale = scale
        return scale * a * np.sin(b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = (g * ctx.scale * np.sin(b)).sum(axis=0) if ctx.needs_input_grad[0] else None
        gb = g * ctx.scale * a * np.cos(b) if ctx.needs_input_grad[1] else None
        return ga, gb, None  # None for the non-tensor argument


def _leaf(*shape, seed=0):
    return minires.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def test_custom_sigmoid_gradchecks_and_matches_torch():
    x = _leaf(3, 4)
    assert minires.gradcheck(Sigmoid.apply, [x])
    torch = pytest.importorskip("torch")
    y = Sigmoid.apply(x)
    xt = torch.tensor(x.numpy(), requires_grad=True)
    yt = torch.sigmoid(xt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-14)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_two_input_op_with_a_non_tensor_argument_gradchecks():
    a, b = _leaf(4, seed=1), _leaf(3, 4, seed=2)
    assert minires.gradcheck(lambda a, b: ScaledProduct.apply(a, b, 2.5), [a, b])


def test_forward_gets_arrays_and_other_values_as_given():
    seen = {}

    class Probe(minires.Function):
        @staticmethod
        def forward(ctx, x, k, mode):
            seen.update(x=x, k=k, mode=mode)
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g * 2, None, None

    x = _leaf(2)
    Probe.apply(x, 2, "fast")
    assert type(seen["x"]) is np.ndarray and seen["x"] is x.data
    assert seen["k"] == 2 and seen["mode"] == "fast"


def test_needs_input_grad_and_saved_tensors():
    recorded = {}

    class Record(minires.Function):
        @staticmethod
        def forward(ctx, a, b, c):
            recorded["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(a, b)
            return a + b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            recorded["saved"] = (a, b)
            recorded["needs_in_backward"] = ctx.needs_input_grad
            return g, g, None

    a, b = _leaf(3, seed=1), minires.tensor(np.ones(3))
    y = Record.apply(a, b, 7.0)
    assert recorded["needs"] == (True, False, False)
    y.backward(np.full(3, 2.0))
    assert recorded["saved"][0] is a.data and recorded["saved"][1] is b.data
    assert recorded["needs_in_backward"] == (True, False, False)
    np.testing.assert_array_equal(a.grad.numpy(), np.full(3, 2.0))
    assert b.grad is None  # a gradient for an input that does not require grad is dropped


def test_needs_input_grad_lets_backward_skip_work():
    a, b = _leaf(4, seed=1), minires.tensor(np.random.default_rng(2).standard_normal((3, 4)))
    y = ScaledProduct.apply(a, b, 2.0)
    y.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2.0 * np.sin(b.numpy()).sum(axis=0))
    assert b.grad is None


def test_no_graph_without_grad_inputs_or_under_no_grad():
    x = _leaf(3)
    assert not Sigmoid.apply(minires.tensor(np.ones(3))).requires_grad
    with minires.no_grad():
        y = Sigmoid.apply(x)
    assert not y.requires_grad and y.is_leaf


def test_custom_op_composes_with_builtin_ops():
    x = _leaf(5)
    y = (Sigmoid.apply(x * 2.0) + 1.0).log().sum()
    y.backward()
    s = 1 / (1 + np.exp(-2 * x.numpy()))
    np.testing.assert_allclose(x.grad.numpy(), 2 * s * (1 - s) / (s + 1), rtol=1e-12)


def test_backward_runs_once_for_an_output_used_twice():
    calls = []

    class Double(minires.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            calls.append(g.copy())
            return 2 * g

    x = _leaf(2)
    y = Double.apply(x)
    (y * 3.0 + y).sum().backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], np.full(2, 4.0))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(2, 8.0))


def test_integer_output_does_not_require_grad():
    class ArgMax(minires.Function):
        @staticmethod
        def forward(ctx, x):
            return x.argmax(axis=-1)

        @staticmethod
        def backward(ctx, g):
            raise AssertionError("never called")

    assert not ArgMax.apply(_leaf(2, 3)).requires_grad


def test_gradcheck_catches_a_wrong_backward():
    class WrongSquare(minires.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            return g * ctx.saved_tensors[0]  # missing the factor 2

    with pytest.raises(minires.GradcheckError, match="Jacobian mismatch"):
        minires.gradcheck(WrongSquare.apply, [_leaf(3)])
    assert minires.gradcheck(WrongSquare.apply, [_leaf(3)], raise_exception=False) is False


def _op_with_backward(result):
    """A Function of (a, b, scale) whose backward returns ``result(g)``."""
    class Bad(minires.Function):
        @staticmethod
        def forward(ctx, a, b, scale):
            return a * b * scale

        @staticmethod
        def backward(ctx, g):
            return result(g)
    return Bad


def test_backward_returning_too_few_gradients_raises():
    Bad = _op_with_backward(lambda g: (g, g))
    y = Bad.apply(_leaf(3, seed=1), _leaf(3, seed=2), 2.0)
    with pytest.raises(RuntimeError, match="Bad.backward returned 2 gradients for 3 forward arguments"):
        y.sum().backward()


def test_backward_returning_too_many_gradients_raises():
    Bad = _op_with_backward(lambda g: (g, g, None, g))
    y = Bad.apply(_leaf(3, seed=1), _leaf(3, seed=2), 2.0)
    with pytest.raises(RuntimeError, match="Bad.backward returned 4 gradients for 3 forward arguments"):
        y.sum().backward()


def test_backward_returning_a_wrong_shape_raises():
    Bad = _op_with_backward(lambda g: (g, g.sum(axis=0), None))
    y = Bad.apply(_leaf(2, 3, seed=1), _leaf(2, 3, seed=2), 2.0)
    message = r"Bad.backward returned a gradient of shape \(3,\) for an input of shape \(2, 3\)"
    with pytest.raises(RuntimeError, match=message):
        y.sum().backward()
