"""Sliding-window geometry shared by convolution and pooling kernels (all pairs are (h, w))."""
import numpy as np
from numba import njit


def conv_out_size(size, k, s, p, d):
    """Output length of a window of k taps, dilation d, stride s over size + 2p positions."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@njit(cache=True, inline="always")
def valid_range(offset, stride, size, count):
    """[lo, hi): the t in [0, count) with t*stride + offset inside [0, size), e.g. the output columns
    whose tap lands inside the image, so that the Numba kernels' inner loops need no bounds test.
    Numba inlines this and tap_ranges into the kernels; its disk cache does not notice edits here
    from the kernels' side: clear kernels/__pycache__ after changing them."""
    lo = 0 if offset >= 0 else min(count, (stride - 1 - offset) // stride)
    return lo, max(lo, min(count, (size - 1 - offset) // stride + 1))


@njit(cache=True, inline="always")
def tap_ranges(count, stride, padding, dilation, size, k):
    """(count, 2): for each of count outputs, the taps [lo, hi) of its k-tap window that lie inside
    [0, size), the window of output o starting at o*stride - padding."""
    r = np.empty((count, 2), np.int64)
    for o in range(count):
        r[o, 0], r[o, 1] = valid_range(o * stride - padding, dilation, size, k)
    return r


def out_hw(in_hw, ksize, stride, padding, dilation):
    return tuple(conv_out_size(n, k, s, p, d) for n, k, s, p, d in zip(in_hw, ksize, stride, padding, dilation))


def tap_slices(i, j, ohw, stride, dilation):
    """Slices of the padded input that window tap (i, j) reads for every output position."""
    (oh, ow), (sh, sw), (dh, dw) = ohw, stride, dilation
    return (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def pad(xp, x, padding, value=0):
    """Symmetric padding of the last two axes by (ph, pw); no copy when there is none."""
    return pad2(xp, x, ((padding[0],) * 2, (padding[1],) * 2), value)


def crop(x, pads):
    """Undo pad2 (pads as ((top, bottom), (left, right))) or pad (pads as (ph, pw))."""
    (t, b), (l, r) = (p if isinstance(p, tuple) else (p, p) for p in pads)
    return x[..., t:x.shape[-2] - b, l:x.shape[-1] - r]


def pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length; with ceil_mode a last partial window counts if it starts
    inside the input or its left padding."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n


def pool_padding(in_hw, ohw, ksize, stride, padding, dilation):
    """((top, bottom), (left, right)) padding so that every window of the ohw outputs is in range:
    the bottom/right side may need more than the symmetric padding when ceil_mode adds a window."""
    return tuple((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p))
                 for n, o, k, s, p, d in zip(in_hw, ohw, ksize, stride, padding, dilation))


def pad2(xp, x, pads, value):
    """Pad the last two axes by ((top, bottom), (left, right)) with ``value``, keeping x's memory
    layout (NCHW or channel-major); no copy when there is no padding."""
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    out = xp.full_like(x, value, shape=x.shape[:-2] + (x.shape[-2] + t + b, x.shape[-1] + l + r))
    out[..., t:t + x.shape[-2], l:l + x.shape[-1]] = x
    return out
