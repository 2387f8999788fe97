"""gradcheck is only worth something if it fails: deliberately wrong backwards, in test-only Functions
and in real ops mutated by monkeypatch, must be caught, in full and in fast mode."""
import re

import numpy as np
import pytest

import minires
import minires.functional as F
from minires.ops import shape as shape_ops
from minires.ops.batchnorm import BatchNorm
from minires.ops.conv import Conv2d


class Double(minires.Function):
    """y = 2x with a backward a factor of 2 off."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return grad


class MatMulTransposedGrad(minires.Function):
    """y = a @ b (square matrices) whose gradient for b is transposed: (a^T g)^T instead of a^T g."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad @ b.T, (a.T @ grad).T


class Cube(minires.Function):
    """y = x^3, correctly: dy/dx = 3 x^2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return 3 * x ** 2 * grad


def randn(*shape, seed=0):
    return minires.Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def test_error_names_input_element_and_both_values():
    with pytest.raises(minires.GradcheckError) as info:
        minires.gradcheck(Double.apply, (randn(2, 3),))
    message = str(info.value)
    assert "input 0" in message and "element (0, 0)" in message
    numerical = float(re.search(r"numerical\s+(\S+)", message).group(1))
    analytical = float(re.search(r"analytical\s+(\S+)", message).group(1))
    assert numerical == pytest.approx(2.0) and analytical == pytest.approx(1.0)


@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
def test_wrong_backward_fails(fast_mode):
    with pytest.raises(minires.GradcheckError, match="projection" if fast_mode else "element"):
        minires.gradcheck(Double.apply, (randn(2, 3),), fast_mode=fast_mode)
    assert minires.gradcheck(Double.apply, (randn(2, 3),), raise_exception=False, fast_mode=fast_mode) is False


@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
def test_transposed_gradient_is_caught_on_its_input(fast_mode):
    inputs = randn(3, 3, seed=1), randn(3, 3, seed=2)
    with pytest.raises(minires.GradcheckError, match="with respect to input 1"):
        minires.gradcheck(MatMulTransposedGrad.apply, inputs, fast_mode=fast_mode)
    assert minires.gradcheck(MatMulTransposedGrad.apply, inputs, raise_exception=False, fast_mode=fast_mode) is False


@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
def test_correct_function_passes(fast_mode):
    assert minires.gradcheck(Cube.apply, (randn(2, 3),), fast_mode=fast_mode) is True
    assert minires.gradcheck(lambda a, b: Cube.apply(a @ b), (randn(2, 3), randn(3, 2, seed=1)), fast_mode=fast_mode)


# --- real ops with a mutated backward ---------------------------------------------------------------

def _patch_backward(op, mutate):
    """A patch replacing op.backward by mutate(original backward)."""
    def patch(monkeypatch):
        monkeypatch.setattr(op, "backward", staticmethod(mutate(op.backward)))
    return patch


def _drop_bias_grad(backward):
    def wrong(ctx, grad):
        gx, gw, gb, *rest = backward(ctx, grad)
        return (gx, gw, None, *rest)
    return wrong


def _scale_input_grad(backward):
    def wrong(ctx, grad):
        gx, *rest = backward(ctx, grad)
        return (gx * 1.01, *rest)
    return wrong


def _ignore_batch_statistics(backward):
    """Batch norm's eval-mode gradient in training: forgets that the batch mean and var depend on x."""
    def wrong(ctx, grad):
        ctx.training = False
        return backward(ctx, grad)
    return wrong


def _assign_instead_of_accumulate(monkeypatch):
    """getitem's backward writes ga[index] = g, so a repeated index keeps only one gradient."""
    monkeypatch.setattr(shape_ops, "_is_basic", lambda index: True)


MUTATIONS = [  # (id, patch, function, input shapes, the input whose gradient goes wrong)
    ("conv2d_drops_bias_grad", _patch_backward(Conv2d, _drop_bias_grad),
     lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 2, 5, 5), (3, 2, 3, 3), (3,)], 2),
    ("conv2d_scales_input_grad", _patch_backward(Conv2d, _scale_input_grad),
     lambda x, w: F.conv2d(x, w, padding=1), [(1, 2, 4, 4), (2, 2, 3, 3)], 0),
    ("batch_norm_ignores_batch_stats", _patch_backward(BatchNorm, _ignore_batch_statistics),
     lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(3, 2, 2, 2), (2,), (2,)], 0),
    ("getitem_drops_repeated_index", _assign_instead_of_accumulate, lambda x: x[[0, 2, 0]], [(3, 4)], 0),
]


@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
@pytest.mark.parametrize("patch, fn, shapes, wrong_input", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_mutated_op_backward_fails(monkeypatch, patch, fn, shapes, wrong_input, fast_mode):
    inputs = [randn(*shape, seed=i) for i, shape in enumerate(shapes)]
    assert minires.gradcheck(fn, inputs, fast_mode=fast_mode)  # the real op passes...
    patch(monkeypatch)
    with pytest.raises(minires.GradcheckError, match=f"with respect to input {wrong_input},"):
        minires.gradcheck(fn, inputs, fast_mode=fast_mode)  # ...and its mutation does not
    assert minires.gradcheck(fn, inputs, raise_exception=False, fast_mode=fast_mode) is False
