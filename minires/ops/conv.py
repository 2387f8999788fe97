"""2-D convolution (cross-correlation, as PyTorch) by im2col + one GEMM per group over the whole batch.

x (N, C, H, W), weight (Cout, C/G, kh, kw), bias (Cout,) -> y (N, Cout, Ho, Wo):
    col = im2col(x)                (C*kh*kw, N*Ho*Wo)
    y[g] = weight[g] @ col[g]      (Cout/G, C/G*kh*kw) @ (C/G*kh*kw, N*Ho*Wo), per group g
y comes out channel-major, (Cout, N*Ho*Wo) in memory, and is returned as an (N, Cout, Ho, Wo) view of
it: no transpose copy, and the next layer (batch norm, ReLU, the next conv) works on it as it is.
A 1x1, stride-1, unpadded convolution needs no im2col: channel-major x already is its col.
Backward:  gweight[g] = gy[g] @ col[g]^T,  gcol[g] = weight[g]^T @ gy[g],  gx = col2im(gcol).
Kernel taps that read only padding for every output are dropped before any of this (a 3x3, padding-1
convolution of 1x1 maps is a 1x1 convolution: a plain GEMM, 9x less arithmetic); the live taps are
copied out of the weight by an op of their own (LiveTaps), whose backward gives the others their
zero gradient. Maps with fewer positions than the kernel has live taps (a 3x3 kernel on 2x2 maps)
skip im2col altogether: the whole layer is one dense GEMM with the unrolled weight (ToeplitzConv2d,
kernels/toeplitz.py), 4/9 of im2col's arithmetic on 2x2 maps.
A stride-1 3x3 convolution on maps large enough runs Winograd F(4x4, 3x3) instead (kernels/winograd.py:
4x fewer multiply-adds, float32 results within about 1e-6 relative of im2col's): in its forward, for
the input's gradient (a 3x3 convolution of gy with the flipped, transposed weight) and for the
weight's (from the forward's transformed input V, kept instead of col: 2.25x x's memory, not 9x);
see _winograd for where it pays and set_winograd to turn it off.
When the weight's gradient will be needed, col is kept for it (in place of x) rather than redone by
a second im2col in backward: kh*kw times x's memory until the backward, in buffers the next
step's forward takes again (kernels.pooled; recycled when the node is released), so the kept
cols cost no page faults of fresh memory after the first step. Otherwise (inference, frozen
weights) col, like gcol, lives only until its GEMM has read it, in reused scratch memory, and the
forward works through the batch in chunks of images small enough for their col to stay in cache
(see _chunks): one GEMM per group and chunk, each writing its block of y.
"""
import logging

import numpy as np

from .. import kernels, runtime
from ..kernels._geometry import valid_range
from ..device import array_module
from ..autograd.function import Function
from .checks import pair, positive_output, same_dtype, tensor_arg


log = logging.getLogger(__name__)  # debug: which scheme each convolution shape runs
def _is_pointwise(ksize, stride, padding, dilation):
    return ksize == (1, 1) and stride == (1, 1) and padding == (0, 0)


def channel_major(a):
    """(N, C, H, W) -> (C, N*H*W): a view when a is channel-major in memory, else a copy."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def from_channel_major(a, n):
    """(C, N*H*W) plus N -> the (N, C, H, W) view of it."""
    return a.reshape(a.shape[0], n, -1).transpose(1, 0, 2)


def _winograd(x, geometry, groups, ohw, grad):
    """Whether this convolution runs Winograd F(4x4, 3x3): 3x3, stride 1, no dilation, one group,
    padding <= 2 (so that the input's gradient is one too), float32/64 NumPy arrays with the Numba
    kernels (the NumPy reference transforms are slower than im2col), and maps, batch and channels large
    enough: at least WINOGRAD_MIN[grad] = (outputs a side, tile slots in the batch, tile slots times
    input channels), grad: whether a gradient will be needed. Measured on 2 cores against im2col +
    GEMM: inference 1.2-2.1x on ResNet's 56x56 to 8x8 layers at batch 8-64, 0.5-1.0x with fewer
    tiles (batch 1-4 at 14x14, 8x8 at batch 2-8, 7x7 at batch 8); forward + backward 1.1-1.6x where
    slots x channels >= 160 x 256 (ResNet-50's 14x14 layers at batch 8 with 256 channels 1.23-1.27x,
    8x8 at batch 64 with 128-256 channels 1.1-1.27x), 0.82-0.97x below it (8x8 at batch 64 with 64
    channels, 14x14 at batch 4-16 with 64-256), and on 7x7 and 4x4 maps (0.65-0.88x), where the
    transforms and 36 GEMMs over few tiles cost more than the 4x fewer multiply-adds save."""
    ksize, stride, padding, dilation = geometry
    min_hw, min_slots, min_work = WINOGRAD_MIN[grad]
    slots = x.shape[0] * kernels.winograd_slots(ohw)
    return (runtime.get_winograd() and runtime.get_kernels() == "numba" and ksize == (3, 3) and stride == (1, 1)
            and dilation == (1, 1) and groups == 1 and max(padding) <= 2 and min(ohw) >= min_hw
            and slots >= min_slots and slots * x.shape[1] >= min_work and isinstance(x, np.ndarray)
            and x.dtype in (np.float32, np.float64))


WINOGRAD_MIN = {False: (8, 128, 0), True: (8, 0, 160 * 256)}


def _columns(x, geometry, ohw, memory=kernels.scratch, images=None):
    """The col (C*kh*kw, n*Ho*Wo) of x's images n0..n1 (all by default): those images of x
    themselves for a 1x1 stride-1 convolution, else im2col into ``memory`` (kernels.scratch or
    kernels.pooled)."""
    n0, n1 = (0, x.shape[0]) if images is None else images
    if _is_pointwise(*geometry):
        return channel_major(x[n0:n1])
    rows, cols = x.shape[1] * geometry[0][0] * geometry[0][1], (n1 - n0) * ohw[0] * ohw[1]
    return kernels.im2col(x, *geometry, out=memory(x, (rows, cols), x.dtype), images=images)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, ohw):
        xp = array_module(x)
        geometry = weight.shape[2:], stride, padding, dilation
        # col (Winograd's V) kept for the weight's gradient is made for the whole batch; otherwise
        # chunk by chunk
        keep_col = ctx.needs_input_grad[1] and not _is_pointwise(*geometry)
        ctx.winograd = _winograd(x, geometry, groups, ohw, any(ctx.needs_input_grad[:2]))
        chunks = [] if ctx.winograd else [(0, x.shape[0])] if keep_col else _chunks(x, geometry, ohw)
        if log.isEnabledFor(logging.DEBUG):
            scheme = "1x1: plain GEMM on x" if _is_pointwise(*geometry) else (
                "Winograd F(4x4, 3x3)" + (", V kept for the weight's gradient" if keep_col else "") if ctx.winograd
                else f"im2col ({runtime.get_kernels()}) + GEMM, {len(chunks)} chunk(s) of images")
            log.debug("conv2d x%s w%s stride %s padding %s dilation %s groups %d: %s",
                      x.shape, weight.shape, stride, padding, dilation, groups, scheme)
        w = weight.reshape(groups, weight.shape[0] // groups, -1)
        y = xp.empty((weight.shape[0], x.shape[0], *ohw), dtype=x.dtype)  # channel-major
        for n0, n1 in chunks:
            col = _columns(x, geometry, ohw, kernels.pooled if keep_col else kernels.scratch, (n0, n1))
            xp.matmul(w, col.reshape(groups, -1, col.shape[1]), out=_grouped(y[:, n0:n1], groups))
        if ctx.winograd:
            v_shape = (6, 6, x.shape[1], x.shape[0] * kernels.winograd_slots(ohw))
            col = kernels.pooled(x, v_shape, x.dtype) if keep_col else None
            kernels.winograd_conv3x3(x, weight, padding, out=y, v=col)
        if bias is not None:
            y += bias[:, None, None, None]
        # x only where the weight's gradient will need it (a 1x1 convolution's col is x itself)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] and not keep_col else None, weight, col if keep_col else None)
        ctx.geometry, ctx.groups, ctx.x_shape = geometry, groups, x.shape
        return y.transpose(1, 0, 2, 3)

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        x, weight, col = ctx.saved_tensors
        groups, cout = ctx.groups, weight.shape[0]
        gy = channel_major(g).reshape(groups, cout // groups, -1)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            wt = weight.reshape(groups, cout // groups, -1).swapaxes(1, 2)
            if ctx.winograd:  # gx = 3x3 convolution of gy, padded 2 - p, with the flipped weight, (C, Cout)
                n, c, h, w = ctx.x_shape
                flipped, padding = weight[:, :, ::-1, ::-1].swapaxes(0, 1), tuple(2 - p for p in ctx.geometry[2])
                gx = kernels.winograd_conv3x3(g, flipped, padding, out=xp.empty((c, n, h, w), g.dtype))
                gx = gx.transpose(1, 0, 2, 3)
            elif _is_pointwise(*ctx.geometry):  # gcol is gx itself
                gx = from_channel_major(xp.matmul(wt, gy).reshape(-1, gy.shape[2]), g.shape[0]).reshape(ctx.x_shape)
            else:
                gcol = xp.matmul(wt, gy, out=kernels.scratch(g, (groups, wt.shape[1], gy.shape[2]), g.dtype))
                gx = kernels.col2im(gcol.reshape(-1, gy.shape[2]), ctx.x_shape, *ctx.geometry)
        if ctx.needs_input_grad[1] and ctx.winograd:  # col is V
            gw = kernels.winograd_weight_grad(g, col)
        elif ctx.needs_input_grad[1]:
            col = _columns(x, ctx.geometry, g.shape[2:]) if col is None else col
            # into an array of its own (not a reshaped view): a leaf's .grad then takes it without a copy
            gw = xp.empty(weight.shape, weight.dtype)
            xp.matmul(gy, col.reshape(groups, -1, col.shape[1]).swapaxes(1, 2),
                      out=gw.reshape(groups, cout // groups, -1))
        if ctx.needs_input_grad[2]:
            gb = gy.sum(axis=2).reshape(cout)
        return gx, gw, gb, None, None, None, None, None

    def release(self):
        """Free the graph below, and give a kept col back for the next forward to reuse."""
        col = self.saved_tensors[2] if "_saved" in vars(self) else None
        super().release()
        if col is not None:
            kernels.recycle(col)


def _grouped(a, groups):
    """(Cout, n, Ho, Wo) -> its (groups, Cout/groups, n*Ho*Wo) view: a GEMM's output block."""
    return a.reshape(groups, a.shape[0] // groups, -1)


def _chunks(x, geometry, ohw):
    """The image ranges [n0, n1) that a forward without a kept col works through one at a time:
    groups of images whose col is at most CHUNK_BYTES, so that col stays in the CPU's cache from
    im2col to its GEMM (measured on 2 cores, ResNet-18 inference at batch 16: 17% faster than one
    col of the whole batch, which makes a round trip through memory). The whole batch at once on a
    GPU, for a 1x1 stride-1 convolution (no col), and where one image's col alone exceeds the limit.
    In training col is kept for the backward instead, which measured faster than chunks redone there."""
    n = x.shape[0]
    if _is_pointwise(*geometry) or array_module(x) is not np:
        return [(0, n)]
    per_image = x.shape[1] * geometry[0][0] * geometry[0][1] * ohw[0] * ohw[1] * x.itemsize
    step = max(1, CHUNK_BYTES // per_image)
    return [(n0, min(n0 + step, n)) for n0 in range(0, n, step)]


CHUNK_BYTES = 16 << 20


def _live_taps(size, k, s, p, d, out):
    """[t0, t1): the taps of a k-tap window (stride s, padding p, dilation d, ``out`` outputs over
    ``size`` inputs) that read inside the input for at least one output (the kernels' valid_range:
    the outputs whose tap t, at offset t*d - p, lands inside)."""
    live = []
    for t in range(k):
        lo, hi = valid_range(t * d - p, s, size, out)
        if hi > lo:
            live.append(t)
    return (live[0], live[-1] + 1) if live else (0, k)


class LiveTaps(Function):
    """w[:, :, t0:t1, u0:u1] as a C-contiguous array (kernels.taps_crop). Backward: zeros, the live
    taps' gradient put back in place (kernels.taps_pad)."""

    @staticmethod
    def forward(ctx, w, rows, cols):
        ctx.shape, ctx.origin = w.shape, (rows[0], cols[0])
        return kernels.taps_crop(w, rows, cols)

    @staticmethod
    def backward(ctx, g):
        return kernels.taps_pad(g, ctx.shape, ctx.origin), None, None


class ToeplitzConv2d(Function):
    """A convolution on maps smaller than its kernel as one GEMM with the unrolled weight Wb (see
    kernels/toeplitz.py), over the batch's columns:
        Y (P*Cout, N) = Wb (P*Cout, Q*C) @ X (Q*C, N),    X[(q, c), n] = x[n, c, q]
    Backward: gX = Wb^T @ gY, gWb = gY @ X^T folded back onto the taps. X and Y are x and y with
    their axes reordered (small: these maps have a few positions)."""

    @staticmethod
    def forward(ctx, x, weight, bias, taps, ohw):
        xp = array_module(x)
        (n, c), cout, (p_out, q_in) = x.shape[:2], weight.shape[0], taps.shape
        wb = kernels.toeplitz_weight(weight, taps)
        cols = xp.ascontiguousarray(x.reshape(n, c, q_in).transpose(2, 1, 0)).reshape(q_in * c, n)
        y = xp.ascontiguousarray((wb @ cols).reshape(p_out, cout, n).transpose(1, 2, 0))  # channel-major
        if bias is not None:
            y += bias[:, None, None]
        ctx.save_for_backward(wb if ctx.needs_input_grad[0] else None, cols if ctx.needs_input_grad[1] else None)
        ctx.taps, ctx.w_shape, ctx.x_shape = taps, weight.shape, x.shape
        return y.reshape(cout, n, *ohw).transpose(1, 0, 2, 3)

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        wb, cols = ctx.saved_tensors
        (n, c, h, w), cout, p_out = ctx.x_shape, ctx.w_shape[0], ctx.taps.shape[0]
        gy = xp.ascontiguousarray(g.reshape(n, cout, p_out).transpose(2, 1, 0)).reshape(p_out * cout, n)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # (Q*C, N) -> channel-major (C, N, H, W)
            gx = xp.ascontiguousarray((wb.T @ gy).reshape(h * w, c, n).transpose(1, 2, 0))
            gx = gx.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        if ctx.needs_input_grad[1]:
            gw = kernels.toeplitz_weight_grad(gy @ cols.T, ctx.taps, ctx.w_shape)
        if ctx.needs_input_grad[2]:
            gb = gy.reshape(p_out, cout, n).sum(axis=(0, 2))
        return gx, gw, gb, None, None


def _drop_dead_taps(w, window, x_hw, stride, padding, dilation, ohw):
    """(weight, padding) without the kernel rows/columns outside the live ``window`` ((t0, t1), (u0, u1),
    from _live_taps), which read only padding (LiveTaps), where dropping them keeps a symmetric
    padding and the output size; else the arguments unchanged."""
    (t0, t1), (u0, u1) = window
    pad = (padding[0] - t0 * dilation[0], padding[1] - u0 * dilation[1])
    if (t1 - t0, u1 - u0) == w.shape[2:] or min(pad) < 0 or tuple(
            kernels.conv_out_size(n, k, s, p, d) for n, k, s, p, d in zip(x_hw, (t1 - t0, u1 - u0), stride, pad, dilation)) != ohw:
        return w, padding
    log.debug("conv2d: kernel %s reads only padding outside rows %d:%d, columns %d:%d on %s maps: dropped",
              w.shape[2:], t0, t1, u0, u1, x_hw)
    return LiveTaps.apply(w, (t0, t1), (u0, u1)), pad


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
    ohw = tuple(kernels.conv_out_size(n, k, s, p, d) for n, k, s, p, d in zip(x.shape[2:], (kh, kw), stride, padding, dilation))
    positive_output(op, x.shape[2:], ohw, kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    (t0, t1), (u0, u1) = window = tuple(_live_taps(n, k, s, p, d, o) for n, k, s, p, d, o in
                                        zip(x.shape[2:], (kh, kw), stride, padding, dilation, ohw))
    # a map of fewer positions than the kernel has live taps: the dense GEMM does fewer multiply-adds
    if groups == 1 and x.shape[2] * x.shape[3] < (t1 - t0) * (u1 - u0):
        log.debug("conv2d x%s w%s stride %s padding %s dilation %s: one GEMM with the unrolled weight (%d positions)",
                  x.shape, w.shape, stride, padding, dilation, x.shape[2] * x.shape[3])
        return ToeplitzConv2d.apply(x, w, b, kernels.toeplitz_taps(x.shape[2:], (kh, kw), stride, padding, dilation), ohw)
    w, padding = _drop_dead_taps(w, window, x.shape[2:], stride, padding, dilation, ohw)
    return Conv2d.apply(x, w, b, stride, padding, dilation, groups, ohw)
