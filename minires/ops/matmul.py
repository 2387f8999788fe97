"""Matrix products: a @ b with NumPy's matmul semantics (1-D operands, batch broadcasting), and
linear(x, W, b) = x W^T + b as one node."""
import numpy as np

from ..autograd.function import Function
from .checks import same_dtype, tensor_arg
from .utils import unbroadcast


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # View 1-D operands as a row (a) or a column (b) matrix, so both cases are plain matmuls.
        a2 = a if a.ndim > 1 else a[None, :]
        b2 = b if b.ndim > 1 else b[:, None]
        if b.ndim == 1:
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        ga = unbroadcast(g @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(a2.swapaxes(-1, -2) @ g, b2.shape).reshape(b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Linear(Function):
    """x (*, in), weight (out, in), bias (out,) or None -> (*, out)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        y = x @ weight.T
        if bias is not None:
            y += bias
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        gx = g @ weight if ctx.needs_input_grad[0] else None
        g2 = g.reshape(-1, g.shape[-1])
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def matmul(a, b):
    sa, sb = getattr(a, "shape", ()), getattr(b, "shape", ())
    if len(sa) == 0 or len(sb) == 0 or sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise ValueError(f"matmul: shapes {sa} and {sb} do not align")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: the batch dimensions of shapes {sa} and {sb} do not broadcast") from None
    return MatMul.apply(a, b)


def linear(input, weight, bias=None):
    """input (*, in), weight (out, in), bias (out,) or None -> input @ weight^T + bias, shape (*, out)."""
    op = "linear"
    x, w = tensor_arg(op, "input", input), tensor_arg(op, "weight", weight, 2)
    b = None if bias is None else tensor_arg(op, "bias", bias, 1)
    same_dtype(op, input=x, weight=w, bias=b)
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"{op}: input of shape {x.shape} does not match weight of shape {w.shape} (expected last dim {w.shape[1]})")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({w.shape[0]},) for weight of shape {w.shape}, got {b.shape}")
    return Linear.apply(x, w, b)
