"""Shape ops: reshape, transpose, flatten and indexing. They move no data in forward (views) where
NumPy can avoid it."""
import numpy as np

from ..device import array_module
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from .reduce import normalize_axes


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes)), None


class GetItem(Function):
    """a[index]: basic slicing, integer and boolean array indexing; repeated indices accumulate."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index = a.shape, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        ga = xp.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic(ctx.index):
            ga[ctx.index] = g
        else:  # repeated indices add up: ufunc.at
            xp.add.at(ga, ctx.index, g)
        return ga, None


def _is_basic(index):
    """True when the index selects each element at most once (ints, slices, None, Ellipsis)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


def reshape(a, shape):
    shape = tuple(int(s) for s in shape)
    size = 1
    for s in shape:
        size *= s if s != -1 else 1
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or (
            a.data.size != size if -1 not in shape else (size == 0 or a.data.size % size)):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} into {shape}")
    return Reshape.apply(a, shape)


def transpose(a, axes=()):
    axes = tuple(axes) or tuple(reversed(range(a.ndim)))
    if sorted(normalize_axes("transpose", axes, a.ndim)) != list(range(a.ndim)) or len(axes) != a.ndim:
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {a.ndim} axes of shape {a.shape}")
    return Transpose.apply(a, tuple(x % a.ndim for x in axes))


def flatten(a, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim into one (PyTorch's flatten)."""
    if a.ndim == 0:
        return reshape(a, (1,))
    start, end = normalize_axes("flatten", start_dim, a.ndim)[0], normalize_axes("flatten", end_dim, a.ndim)[0]
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {a.shape}")
    return reshape(a, a.shape[:start] + (int(np.prod(a.shape[start:end + 1])),) + a.shape[end + 1:])


def getitem(a, index):
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(i.data if isinstance(i, Tensor) else i for i in items)
    index = items if isinstance(index, tuple) else items[0]
    try:
        return GetItem.apply(a, index)
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {a.shape}: {e}") from None


class Pad(Function):
    """Constant padding: forward copies the input into a larger array filled with ``value``; backward
    cuts the input's window out of the gradient (the padding depends on no input)."""

    @staticmethod
    def forward(ctx, a, widths, value):
        ctx.window = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, a.shape))
        return array_module(a).pad(a, widths, constant_values=value)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.window], None, None


def pad(input, pad, mode="constant", value=0.0):
    """PyTorch's F.pad, constant mode: ``pad`` lists (before, after) widths from the last axis
    backwards, e.g. (left, right, top, bottom, front, back) for an NCHW tensor's W, H and C axes."""
    input, pad = input if isinstance(input, Tensor) else Tensor(input), tuple(pad)
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) > 2 * input.ndim or not all(isinstance(p, (int, np.integer)) and p >= 0 for p in pad):
        raise ValueError(f"pad: pad must be pairs of non-negative ints for at most {input.ndim} axes, got {pad!r}")
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)][::-1]  # first axis first
    widths = ((0, 0),) * (input.ndim - len(pairs)) + tuple(pairs)
    return Pad.apply(input, widths, value)
