"""2-D convolution (cross-correlation, as PyTorch) by im2col + one batched GEMM per group.

x (N, C, H, W), weight (Cout, C/G, kh, kw), bias (Cout,) -> y (N, Cout, Ho, Wo), with
y[n, g] = weight[g] (Cout/G, C/G*kh*kw) @ col[n, g] (C/G*kh*kw, Ho*Wo); a 1x1, stride-1, unpadded
convolution is a GEMM on x itself. Backward: gweight = sum_n gy[n] @ col[n]^T, gcol = weight^T @ gy,
gx = col2im(gcol). The input, not its 9x larger col, is saved: backward redoes im2col.
"""
from .. import kernels
from ..backend import array_module
from ..function import Function
from .checks import pair, positive_output, same_dtype, tensor_arg


def _is_pointwise(ksize, stride, padding, dilation):
    return ksize == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _columns(x, ksize, stride, padding, dilation):
    if _is_pointwise(ksize, stride, padding, dilation):
        return x.reshape(x.shape[0], x.shape[1], -1)  # a view: 1x1 needs no im2col
    return kernels.im2col(x, ksize, stride, padding, dilation)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        xp = array_module(x)
        n, (cout, cg, kh, kw) = x.shape[0], weight.shape
        geometry = (kh, kw), stride, padding, dilation
        ohw = kernels.conv_out_size(x.shape[2], kh, stride[0], padding[0], dilation[0]), \
            kernels.conv_out_size(x.shape[3], kw, stride[1], padding[1], dilation[1])
        col = _columns(x, *geometry).reshape(n, groups, cg * kh * kw, -1)
        y = xp.matmul(weight.reshape(groups, cout // groups, -1), col).reshape(n, cout, *ohw)
        if bias is not None:
            y += bias[:, None, None]
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.groups = geometry, groups
        return y

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        x, weight = ctx.saved_tensors
        n, groups, (cout, cg, kh, kw) = x.shape[0], ctx.groups, weight.shape
        g = g.reshape(n, groups, cout // groups, -1)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gcol = xp.matmul(weight.reshape(groups, cout // groups, -1).swapaxes(1, 2), g).reshape(n, cg * groups * kh * kw, -1)
            gx = gcol.reshape(x.shape) if _is_pointwise(*ctx.geometry) else kernels.col2im(gcol, x.shape, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            col = _columns(x, *ctx.geometry).reshape(n, groups, cg * kh * kw, -1)
            gw = xp.matmul(g, col.swapaxes(2, 3)).sum(axis=0).reshape(weight.shape)
        if ctx.needs_input_grad[2]:
            gb = g.sum(axis=(0, 3)).reshape(cout)
        return gx, gw, gb, None, None, None, None


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's F.conv2d: input (N, C, H, W), weight (Cout, C/groups, kh, kw), bias (Cout,) or None."""
    op = "conv2d"
    x, w = tensor_arg(op, "input", input, 4), tensor_arg(op, "weight", weight, 4)
    b = None if bias is None else tensor_arg(op, "bias", bias, 1)
    same_dtype(op, input=x, weight=w, bias=b)
    stride, padding, dilation = pair(op, "stride", stride, 1), pair(op, "padding", padding, 0), pair(op, "dilation", dilation, 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    cout, cg, kh, kw = w.shape
    if min(w.shape) < 1:
        raise ValueError(f"{op}: weight shape {w.shape} has an empty dimension")
    if x.shape[1] % groups or cout % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({x.shape[1]}) and the output channels ({cout})")
    if cg * groups != x.shape[1]:
        raise ValueError(f"{op}: input of shape {x.shape} has {x.shape[1]} channels, but weight of shape {w.shape} "
                         f"with groups={groups} expects {cg * groups}")
    if b is not None and b.shape != (cout,):
        raise ValueError(f"{op}: bias must have shape ({cout},) for weight of shape {w.shape}, got {b.shape}")
    ohw = [kernels.conv_out_size(n, k, s, p, d) for n, k, s, p, d in zip(x.shape[2:], (kh, kw), stride, padding, dilation)]
    positive_output(op, x.shape[2:], ohw, kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    return Conv2d.apply(x, w, b, stride, padding, dilation, groups)
