"""A convolution on maps smaller than its kernel, as one dense matrix product with the unrolled weight.

When a map has fewer positions than the kernel has taps (ResNet's 2x2 maps under a 3x3 kernel),
every output reads nearly the whole map, and the layer is cheaper as a dense layer over the map than
as im2col + GEMM, which also multiplies the padding's zeros: on 2x2 maps under a 3x3 kernel with
padding 1, 4 of each window's 9 taps are live, so the unrolled weight does 4/9 of im2col's multiply-adds.
    y[(p, o), n] = sum over (q, c) of Wb[(p, o), (q, c)] * x[(q, c), n],    Wb[(p, o), (q, c)] = w[o, c, T[p, q]]
p over the Ho*Wo outputs, q over the H*W inputs; T[p, q] is the kernel tap through which output p
reads input q, or -1 where it reads none (Wb's block is zero).

    toeplitz_taps(hw, ksize, stride, padding, dilation)  T (Ho*Wo, H*W), taps numbered i*kw + j
    toeplitz_weight(w, taps)               w (Cout, C, kh, kw) -> Wb (P*Cout, Q*C), C-contiguous
    toeplitz_weight_grad(gwb, taps, shape) its adjoint: gw[o, c, t] = sum over T[p, q] = t of gWb's blocks

The Numba versions work a filter o at a time (parallel): its kh*kw*C weights stay in cache while its
P*Q blocks' rows are written (or summed back), each a strided gather over c with unsigned offsets
(see im2col). The gradient sums the blocks in the reference's (p, q) order: exactly equal.
"""
import functools

import numpy as np
from numba import njit, uint64

from ._dispatch import kernel
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ._geometry import out_hw
from ..device import array_module

__all__ = ["toeplitz_taps", "toeplitz_weight", "toeplitz_weight_grad"]


@functools.lru_cache(maxsize=64)
def toeplitz_taps(hw, ksize, stride, padding, dilation):
    """T (Ho*Wo, H*W) int64, read-only: T[p, q] = i*kw + j for the tap (i, j) whose window position for
    output p = (y, x) is input q = (y*sh + i*dh - ph, x*sw + j*dw - pw), or -1."""
    (h, w), (kh, kw) = hw, ksize
    taps = np.full(out_hw(hw, ksize, stride, padding, dilation) + hw, -1, np.int64)
    for i in range(kh):
        for j in range(kw):
            for y in range(taps.shape[0]):
                for x in range(taps.shape[1]):
                    qy, qx = y * stride[0] + i * dilation[0] - padding[0], x * stride[1] + j * dilation[1] - padding[1]
                    if 0 <= qy < h and 0 <= qx < w:
                        taps[y, x, qy, qx] = i * kw + j
    taps = taps.reshape(taps.shape[0] * taps.shape[1], h * w)
    taps.flags.writeable = False
    return taps


@kernel
def toeplitz_weight(w, taps):
    """w (Cout, C, kh, kw), any strides; taps T (P, Q) -> Wb (P*Cout, Q*C), a new C-contiguous array."""
    xp = array_module(w)
    (co, c), (p_out, q_in) = w.shape[:2], taps.shape
    wt, out = w.reshape(co, c, -1), xp.zeros((p_out, co, q_in, c), w.dtype)
    for p in range(p_out):
        for q in range(q_in):
            if taps[p, q] >= 0:
                out[p, :, q] = wt[:, :, taps[p, q]]
    return out.reshape(p_out * co, q_in * c)


@kernel
def toeplitz_weight_grad(gwb, taps, shape):
    """gWb (P*Cout, Q*C), any strides -> gw of ``shape`` (Cout, C, kh, kw), new: each tap's gradient, the
    sum of the blocks (p, q) with T[p, q] on it, in (p, q) order."""
    xp = array_module(gwb)
    (co, c), (p_out, q_in) = shape[:2], taps.shape
    g4, gw = gwb.reshape(p_out, co, q_in, c), xp.zeros((co, c, shape[2] * shape[3]), gwb.dtype)
    for p in range(p_out):
        for q in range(q_in):
            if taps[p, q] >= 0:
                gw[:, :, taps[p, q]] += g4[p, :, q]
    return gw.reshape(shape)


@toeplitz_weight.register("numba")
def _toeplitz_weight_numba(w, taps):
    co, c = w.shape[:2]
    out = np.empty((taps.shape[0] * co, taps.shape[1] * c), w.dtype)
    parallel_chunks(_weight_filters, chunk_count(w.shape[0]), np.ascontiguousarray(w).reshape(co, -1), taps, c, out)
    return out


@toeplitz_weight_grad.register("numba")
def _toeplitz_weight_grad_numba(gwb, taps, shape):
    gw = np.empty(shape, gwb.dtype)
    parallel_chunks(_grad_filters, chunk_count(shape[0]), np.ascontiguousarray(gwb), taps, gw.reshape(shape[0], -1))
    return gw


@njit(cache=True, error_model="numpy")
def _weight_filters(w, taps, c_in, out, chunk, chunks):
    """w (Cout, C*T) (filters flattened, T taps), taps (P, Q) -> out (P*Cout, Q*C): row p*Cout + o,
    columns q*C + c hold w[o, c*T + taps[p, q]], or 0. Loops: this chunk's filters o > p > q > c."""
    co, p_out, q_in = w.shape[0], taps.shape[0], taps.shape[1]
    nt, nc = uint64(w.shape[1] // c_in), uint64(c_in)
    for o in range(*chunk_range(co, chunk, chunks)):
        src = w[o]
        for p in range(p_out):
            row = out[p * co + o]
            for q in range(q_in):
                t, dst = taps[p, q], uint64(q) * nc
                if t < 0:
                    for c in range(nc):
                        row[dst + c] = 0
                else:
                    for c in range(nc):
                        row[dst + c] = src[c * nt + uint64(t)]


@njit(cache=True, error_model="numpy")
def _grad_filters(gwb, taps, gw, chunk, chunks):
    """gwb (P*Cout, Q*C), taps (P, Q) -> gw (Cout, C*T): gw[o, c*T + t] = the sum, in (p, q) order, of
    gwb[p*Cout + o, q*C + c] over taps[p, q] = t. Loops: this chunk's filters o > zeros; p > q > c."""
    co, p_out, q_in = gw.shape[0], taps.shape[0], taps.shape[1]
    nc = uint64(gwb.shape[1] // q_in)
    nt = uint64(gw.shape[1]) // nc
    for o in range(*chunk_range(co, chunk, chunks)):
        dst = gw[o]
        for e in range(dst.size):
            dst[e] = 0
        for p in range(p_out):
            row = gwb[p * co + o]
            for q in range(q_in):
                t, src = taps[p, q], uint64(q) * nc
                if t >= 0:
                    for c in range(nc):
                        dst[c * nt + uint64(t)] += row[src + c]
