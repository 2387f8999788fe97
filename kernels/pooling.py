"""Max and average pooling over NCHW maps, forward and backward, with PyTorch's geometry.

Outputs keep the memory layout of the input (NCHW or channel-major). Windows: out[n, c, y, x] pools xpad[n, c, y*sh + i*dh, x*sw + j*dw] over taps (i, j); the output size
comes from _geometry.pool_out_size (ceil_mode included), computed by the caller and passed as ohw.
"""
from ._dispatch import kernel
from ._geometry import crop, pad2, pool_padding, tap_slices
from ._xp import array_module

__all__ = ["maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward", "avgpool_divisor"]


@kernel
def maxpool_forward(x, ksize, stride, padding, dilation, ohw):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo), argmax (N, C, Ho, Wo) int32 tap index i*kw + j).
    As PyTorch: the first maximum wins ties, and a NaN in the window is the maximum."""
    xp = array_module(x)
    pads = pool_padding(x.shape[2:], ohw, ksize, stride, padding, dilation)
    xpad = pad2(xp, x, pads, -xp.inf)
    y = xp.full_like(x, -xp.inf, shape=x.shape[:2] + tuple(ohw))
    arg = xp.zeros_like(y, dtype=xp.int32)
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            v = xpad[(..., *tap_slices(i, j, ohw, stride, dilation))]
            better = (v > y) | xp.isnan(v)
            y = xp.where(better, v, y)
            arg[better] = i * ksize[1] + j
    return y, arg


@kernel
def maxpool_backward(gy, argmax, x_shape, ksize, stride, padding, dilation):
    """Route each gy element to the input element its window's argmax names (summing overlaps)."""
    xp = array_module(gy)
    ohw = gy.shape[2:]
    pads = pool_padding(x_shape[2:], ohw, ksize, stride, padding, dilation)
    gx = xp.zeros_like(gy, shape=tuple(x_shape[:2]) + tuple(n + a + b for n, (a, b) in zip(x_shape[2:], pads)))
    zero = xp.zeros((), gy.dtype)
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            gx[(..., *tap_slices(i, j, ohw, stride, dilation))] += xp.where(argmax == i * ksize[1] + j, gy, zero)
    return crop(gx, pads).copy(order="K")


def avgpool_divisor(xp, in_hw, ohw, ksize, stride, padding, count_include_pad, dtype):
    """(Ho, Wo) window sizes as PyTorch divides by: the window clipped to the padded input, and
    further to the input itself unless count_include_pad."""
    counts = []
    for n, o, k, s, p in zip(in_hw, ohw, ksize, stride, padding):
        start = xp.arange(o) * s - p
        end = xp.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, n)
        counts.append((end - start).astype(dtype))
    return counts[0][:, None] * counts[1][None, :]


@kernel
def avgpool_forward(x, ksize, stride, padding, ohw, divisor):
    """x (N, C, H, W) -> y (N, C, Ho, Wo): the window sums over the zero-padded input / divisor (Ho, Wo)."""
    xp = array_module(x)
    pads = pool_padding(x.shape[2:], ohw, ksize, stride, padding, (1, 1))
    xpad = pad2(xp, x, pads, 0)
    y = xp.zeros_like(x, shape=x.shape[:2] + tuple(ohw))
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            y += xpad[(..., *tap_slices(i, j, ohw, stride, (1, 1)))]
    y /= divisor
    return y


@kernel
def avgpool_backward(gy, x_shape, ksize, stride, padding, divisor):
    """Spread gy / divisor evenly over each window (summing overlaps)."""
    xp = array_module(gy)
    ohw = gy.shape[2:]
    pads = pool_padding(x_shape[2:], ohw, ksize, stride, padding, (1, 1))
    gx = xp.zeros_like(gy, shape=tuple(x_shape[:2]) + tuple(n + a + b for n, (a, b) in zip(x_shape[2:], pads)))
    g = gy / divisor
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            gx[(..., *tap_slices(i, j, ohw, stride, (1, 1)))] += g
    return crop(gx, pads).copy(order="K")
