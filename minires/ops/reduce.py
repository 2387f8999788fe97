"""Reductions: sum and mean over some axes (all by default)."""
from ..device import array_module
from ..autograd.function import Function


def normalize_axes(op, axis, ndim):
    """axis (None, int or sequence) -> a sorted tuple of non-negative axes, checked."""
    axes = range(ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return spread(g, ctx.shape, ctx.axes, ctx.keepdims), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return a.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        count = 1
        for ax in ctx.axes:
            count *= ctx.shape[ax]
        return spread(g / count, ctx.shape, ctx.axes, ctx.keepdims), None, None


def spread(g, shape, axes, keepdims):
    """Broadcast a reduced gradient back over the reduced axes (a read-only view, no copy)."""
    xp = array_module(g)
    if not keepdims and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def sum(a, axis=None, keepdims=False):
    return Sum.apply(a, normalize_axes("sum", axis, a.ndim), keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, normalize_axes("mean", axis, a.ndim), keepdims)
