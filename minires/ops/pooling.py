"""Pooling over NCHW maps: max, average and adaptive average, with PyTorch's arguments and geometry.

max_pool2d keeps the argmax of each window from forward, so backward routes each gradient to the
element that won. avg_pool2d divides by the window size (padding counted by default). Adaptive
average pooling averages bins [floor(i*H/Ho), ceil((i+1)*H/Ho)), which is separable:
y = Ph @ x @ Pw^T with averaging matrices Ph (Ho, H) and Pw (Wo, W), and gx = Ph^T @ gy @ Pw.
"""
from .. import kernels
from ..device import array_module
from ..autograd.function import Function
from ..kernels._geometry import pool_out_size
from ..kernels.pooling import avgpool_divisor
from .checks import pair, positive_output, tensor_arg


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, ksize, stride, padding, dilation, ohw):
        y, ctx.argmax = kernels.maxpool_forward(x, ksize, stride, padding, dilation, ohw)
        ctx.x_shape, ctx.geometry = x.shape, (ksize, stride, padding, dilation)
        return y

    @staticmethod
    def backward(ctx, g):
        return (kernels.maxpool_backward(g, ctx.argmax, ctx.x_shape, *ctx.geometry),) + (None,) * 5


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, ksize, stride, padding, ohw, divisor):
        ctx.x_shape, ctx.geometry, ctx.divisor = x.shape, (ksize, stride, padding), divisor
        return kernels.avgpool_forward(x, ksize, stride, padding, ohw, divisor)

    @staticmethod
    def backward(ctx, g):
        return (kernels.avgpool_backward(g, ctx.x_shape, *ctx.geometry, ctx.divisor),) + (None,) * 5


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, ohw):
        xp = array_module(x)
        if ohw == (1, 1):  # global average pooling, ResNet's head: a plain mean
            ctx.x_shape = x.shape
            return x.mean(axis=(2, 3), keepdims=True)
        ph, pw = (_bin_matrix(xp, n, o, x.dtype) for n, o in zip(x.shape[2:], ohw))
        ctx.mats = ph, pw
        return ph @ x @ pw.T

    @staticmethod
    def backward(ctx, g):
        if "mats" not in ctx.__dict__:
            n, c, h, w = ctx.x_shape
            return array_module(g).broadcast_to(g / (h * w), ctx.x_shape), None
        ph, pw = ctx.mats
        return ph.T @ g @ pw, None


def _bin_matrix(xp, n, o, dtype):
    """(o, n) matrix averaging PyTorch's adaptive bins [floor(i n / o), ceil((i + 1) n / o))."""
    i = xp.arange(o)[:, None]
    start, end = (i * n) // o, -((-(i + 1) * n) // o)
    j = xp.arange(n)[None, :]
    inside = (j >= start) & (j < end)
    return (inside / (end - start)).astype(dtype)


def _pool_args(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    x = tensor_arg(op, "input", input, 4)
    ksize = pair(op, "kernel_size", kernel_size, 1)
    stride = ksize if stride is None or stride == [] else pair(op, "stride", stride, 1)
    padding, dilation = pair(op, "padding", padding, 0), pair(op, "dilation", dilation, 1)
    if padding[0] > ksize[0] // 2 or padding[1] > ksize[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {ksize}")
    ohw = tuple(pool_out_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(x.shape[2:], ksize, stride, padding, dilation))
    positive_output(op, x.shape[2:], ohw, kernel_size=ksize, stride=stride, padding=padding, dilation=dilation)
    return x, ksize, stride, padding, dilation, ohw


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """PyTorch's F.max_pool2d (stride defaults to kernel_size; padding pads with -inf)."""
    x, ksize, stride, padding, dilation, ohw = _pool_args("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    return MaxPool2d.apply(x, ksize, stride, padding, dilation, ohw)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """PyTorch's F.avg_pool2d: zero padding counted in the divisor unless count_include_pad=False."""
    x, ksize, stride, padding, _, ohw = _pool_args("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    xp = array_module(x.data)
    if divisor_override is not None:
        if not isinstance(divisor_override, int) or divisor_override < 1:
            raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
        divisor = xp.full(ohw, divisor_override, dtype=x.dtype)
    else:
        divisor = avgpool_divisor(xp, x.shape[2:], ohw, ksize, stride, padding, count_include_pad, x.dtype)
    return AvgPool2d.apply(x, ksize, stride, padding, ohw, divisor)


def adaptive_avg_pool2d(input, output_size):
    """PyTorch's F.adaptive_avg_pool2d; output_size an int or a pair (None keeps that input size)."""
    op = "adaptive_avg_pool2d"
    x = tensor_arg(op, "input", input, 4)
    size = (output_size, output_size) if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(size) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    ohw = tuple(n if o is None else o for n, o in zip(x.shape[2:], size))
    if not all(isinstance(o, int) for o in ohw):
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    if min(ohw) < 1:
        raise ValueError(f"{op}: output_size {output_size!r} must be at least 1, for input of shape {x.shape}")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: input of shape {x.shape} has an empty spatial dimension")
    return AdaptiveAvgPool2d.apply(x, ohw)
