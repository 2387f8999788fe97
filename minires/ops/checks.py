"""Argument checks shared by the ops: each raises ValueError/TypeError naming the op and the values."""
from ..autograd.tensor import Tensor


def pair(op, name, value, minimum):
    """An int or a pair of ints -> a pair, each at least ``minimum``."""
    v = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(v) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(v) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return v


def tensor_arg(op, name, x, ndim=None):
    """A Tensor argument (arrays are wrapped), floating point, with the given number of dimensions."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {x.shape}")
    return x


def same_dtype(op, **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{op}: dtypes differ: " + ", ".join(f"{k} {v}" for k, v in dtypes.items()))


def positive_output(op, in_hw, out_hw, **geometry):
    if min(out_hw) < 1:
        desc = ", ".join(f"{k}={v}" for k, v in geometry.items())
        raise ValueError(f"{op}: output size {tuple(out_hw)} is below 1 for input size {tuple(in_hw)} ({desc})")
