"""Elementwise ops with NumPy broadcasting; Python scalars may stand on either side of a binary op."""
import numpy as np

from .. import kernels
from ..device import array_module, device_of, to_device
from ..autograd.function import Function
from .utils import shape_of, unbroadcast


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = shape_of(a), shape_of(b)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(g, ctx.shapes[1])


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = shape_of(a), shape_of(b)
        return a - b

    @staticmethod
    def backward(ctx, g):
        gb = unbroadcast(g, ctx.shapes[1])
        return unbroadcast(g, ctx.shapes[0]), None if gb is None else -gb


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g * b, shape_of(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, shape_of(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g_over_b = g / b
        ga = unbroadcast(g_over_b, shape_of(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g_over_b * a / b, shape_of(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """a ** b;  d/da = b a^(b-1),  d/db = a^b log a."""

    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        ga = unbroadcast(g * b * a ** (b - 1), shape_of(a)) if ctx.needs_input_grad[0] else None
        # log in out's dtype: np.log of a Python-float base would be float64 and promote the gradient
        gb = unbroadcast(g * out * array_module(out).log(a, dtype=out.dtype), shape_of(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = array_module(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved_tensors[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved_tensors[0]


class ReLU(Function):
    """max(a, 0); the gradient at 0 is 0, as in PyTorch."""

    @staticmethod
    def forward(ctx, a):
        out = array_module(a).maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return kernels.relu_backward(g, ctx.saved_tensors[0])


class AddReLU(Function):
    """relu(a + b) for same-shape a, b as one node (a residual block's output), one kernel pass each
    way, saving only its output. d/da = d/db = g where out > 0, else 0."""

    @staticmethod
    def forward(ctx, a, b):
        out = kernels.add_relu(a, b)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        g = kernels.relu_backward(g, ctx.saved_tensors[0])
        # One array for both inputs is safe: run_backward sums gradients out of place, and a leaf's
        # .grad starts as a copy.
        return g, g


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype, copy=False), None


class ToDevice(Function):
    """The same values on another device (minires.device); the gradient goes back to the input's."""

    @staticmethod
    def forward(ctx, a, name):
        ctx.source = device_of(a).name
        return to_device(a, name)

    @staticmethod
    def backward(ctx, g):
        return to_device(g, ctx.source), None


def _weak(x):
    """A NumPy scalar acts as a Python scalar, as in PyTorch: np.float64(2) * a float32 tensor stays float32."""
    return x.item() if isinstance(x, np.generic) else x


def _binary(op):
    """op's public function: NumPy scalars made weak, and shapes that do not broadcast named."""
    name = op.__name__.lower()

    def apply(a, b):
        a, b = _weak(a), _weak(b)
        sa, sb = shape_of(a), shape_of(b)
        if sa is not None and sb is not None:
            try:
                np.broadcast_shapes(sa, sb)
            except ValueError:
                raise ValueError(f"{name}: shapes {sa} and {sb} do not broadcast") from None
        return op.apply(a, b)
    return apply


add, sub, mul, div, pow = (_binary(op) for op in (Add, Sub, Mul, Div, Pow))
neg, exp, log, relu, add_relu, cast = Neg.apply, Exp.apply, Log.apply, ReLU.apply, AddReLU.apply, Cast.apply
