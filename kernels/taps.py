"""A convolution weight's live taps, and back: conv2d drops the kernel rows and columns that read only
padding on small maps (a 3x3 filter bank on 1x1 maps is its centre tap, a 1x1 convolution).

    taps_crop(w, rows, cols)   w (K, C, kh, kw) -> w[:, :, t0:t1, u0:u1], C-contiguous, for the GEMM
    taps_pad(g, shape, origin) its adjoint: g put back at origin (t0, u0) of a (K, C, kh, kw) array of zeros

In a C-contiguous weight a tap is a run of stride kh*kw over (K, C), so the NumPy reference copies a
tap at a time (a 4-D slice copied at once runs loops of t1 - t0 elements). The Numba versions walk
the weight a filter k per iteration, and taps_pad zeroes each filter's slab while it is in cache before
putting its taps in, so that memory sees every element written once (the reference's np.zeros, then
the taps, write the whole array twice). Both are memory-bound: every cache line of the full weight
is read or written (ResNet-18's layer4 on 32x32 images: 8.3 million weights, 33 MB in float32,
cropped in every forward and padded back in every backward).
"""
import numpy as np
from numba import njit

from ._dispatch import kernel
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ..device import array_module

__all__ = ["taps_crop", "taps_pad"]


@kernel
def taps_crop(w, rows, cols):
    """w (K, C, kh, kw), any strides; rows = (t0, t1), cols = (u0, u1) -> w[:, :, t0:t1, u0:u1] as a new
    C-contiguous array."""
    out = array_module(w).empty(w.shape[:2] + (rows[1] - rows[0], cols[1] - cols[0]), w.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = w[:, :, rows[0] + i, cols[0] + j]
    return out


@kernel
def taps_pad(g, shape, origin):
    """g (K, C, th, tw), any strides -> a new C-contiguous array of ``shape`` (K, C, kh, kw): g at rows
    t0:t0 + th, columns u0:u0 + tw for origin = (t0, u0), zero elsewhere."""
    (t0, u0), out = origin, array_module(g).zeros(shape, g.dtype)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            out[:, :, t0 + i, u0 + j] = g[:, :, i, j]
    return out


@taps_crop.register("numba")
def _taps_crop_numba(w, rows, cols):
    out = np.empty(w.shape[:2] + (rows[1] - rows[0], cols[1] - cols[0]), w.dtype)
    parallel_chunks(_crop_filters, chunk_count(w.shape[0]), np.ascontiguousarray(w), rows[0], cols[0], out)
    return out


@taps_pad.register("numba")
def _taps_pad_numba(g, shape, origin):
    out = np.empty(shape, g.dtype)
    parallel_chunks(_pad_filters, chunk_count(g.shape[0]), np.ascontiguousarray(g), *origin, out)
    return out


@njit(cache=True, error_model="numpy")
def _crop_filters(w, t0, u0, out, chunk, chunks):
    """w (K, C, kh, kw) -> out (K, C, th, tw), both C-contiguous: out[k, c, i, j] = w[k, c, t0 + i, u0 + j].
    Per filter, one loop over c per live tap, not over the few live taps innermost, a loop too short
    to pay (see benchmarks/RESULTS.md). The runs over c are strided views: with strides known only at
    run time LLVM keeps the loop scalar (unrolled), where flat indices with the strides written out
    let it vectorize the loop into gathers, slower here. Loops: this chunk's filters k > taps > c."""
    k_out, c_in, th, tw = out.shape
    for k in range(*chunk_range(k_out, chunk, chunks)):
        for i in range(th):
            for j in range(tw):
                dst, src = out[k, :, i, j], w[k, :, t0 + i, u0 + j]
                for c in range(c_in):
                    dst[c] = src[c]


@njit(cache=True, error_model="numpy")
def _pad_filters(g, t0, u0, out, chunk, chunks):
    """g (K, C, th, tw) -> out (K, C, kh, kw), both C-contiguous: out[k, c, t0 + i, u0 + j] = g[k, c, i, j],
    0 elsewhere. Per filter: zeros over its whole slab (one vectorized run), then the live taps while
    the slab is in cache, so memory sees each element written once. Loops: this chunk's filters k >
    zeros; taps > c (strided views, as _crop_filters)."""
    k_out, c_in, th, tw = g.shape
    zero = out.dtype.type(0)
    for k in range(*chunk_range(k_out, chunk, chunks)):
        slab = out[k].reshape(-1)
        for e in range(slab.size):
            slab[e] = zero
        for i in range(th):
            for j in range(tw):
                dst, src = out[k, :, t0 + i, u0 + j], g[k, :, i, j]
                for c in range(c_in):
                    dst[c] = src[c]
