"""The ReLU pieces of a residual block: relu(a + b) (F.add_relu; the ResNets fuse the addition into
the batch norm before it instead) and the ReLU's backward (the mask of the block's gradient).

NumPy's ufuncs make two passes for each (the add, then the clamp; the mask, then the select) on one
core; the Numba versions make one pass on all of them. Both are memory-bound. Arrays are
(N, C, ...) in NCHW or channel-major memory (see _layout), or of any shape, C-contiguous. add_relu's
output is in a's layout, relu_backward's in out's (the layout the forward produced).
"""
import numpy as np
from numba import njit, prange

from ._dispatch import kernel
from ._layout import canonical, is_channel_major, restore
from ..device import array_module

__all__ = ["add_relu", "relu_backward"]


@kernel
def add_relu(a, b):
    """a, b of one shape and dtype -> max(a + b, 0) (NaN kept), in a's memory layout."""
    xp = array_module(a)
    out = xp.add(a, b, out=xp.empty_like(a))
    return xp.maximum(out, 0, out=out)


@add_relu.register("numba")
def _add_relu_numba(a, b):
    return _flat(_add_relu_loops, a, b, layout_of=a)


@njit(cache=True, parallel=True)
def _add_relu_loops(a, b, out):
    """a, b, out 1-D, contiguous: out = a + b, 0 where that is < 0. Loops: elements in parallel (one
    contiguous block per thread; vectorized)."""
    for i in prange(a.size):
        v = a[i] + b[i]
        out[i] = 0 if v < 0 else v


@kernel
def relu_backward(g, out):
    """The gradient through a ReLU whose output is ``out``: g where out > 0, else 0 (also where g is inf
    or NaN, as PyTorch's threshold_backward)."""
    return array_module(g).where(out > 0, g, 0).astype(g.dtype, copy=False)


@relu_backward.register("numba")
def _relu_backward_numba(g, out):
    return _flat(_relu_backward_loops, g, out, layout_of=out)


@njit(cache=True, parallel=True)
def _relu_backward_loops(g, out, gx):
    """g, out, gx 1-D, contiguous: gx = g where out > 0, else 0. Loops: elements in parallel (vectorized)."""
    zero = g.dtype.type(0)
    for i in prange(g.size):
        gx[i] = g[i] if out[i] > 0 else zero


def _flat(loops, a, b, layout_of):
    """loops(a, b, result) on a and b flattened in the memory layout of ``layout_of`` (one of them;
    arrays of fewer than two axes count as NCHW): the result, of a's shape, in that layout."""
    cm = layout_of.ndim >= 2 and is_channel_major(layout_of)
    ac, bc = canonical(a, cm), canonical(b, cm)
    result = np.empty_like(ac)
    loops(ac.reshape(-1), bc.reshape(-1), result.reshape(-1))
    return restore(result, cm).reshape(a.shape)  # reshape: 0-d arrays come back 1-d from canonical
