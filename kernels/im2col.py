"""im2col / col2im: unfold the sliding windows of an image batch into one GEMM-ready matrix, and back.

Layout: col[(c, i, j), (n, y, x)] = xpad[n, c, y*sh + i*dh, x*sw + j*dw], shape (C*kh*kw, N*Ho*Wo), so
that conv2d over the whole batch is ONE GEMM  weight (Cout, C*kh*kw) @ col  giving y in channel-major
(Cout, N, Ho, Wo) memory, which the engine exposes as an (N, C, H, W) view without copying.
Inputs may have any strides (NCHW or channel-major memory).

The Numba versions write every col element once (zeros included) and read each input plane from
cache kh*kw times; they are memory-bound, about the cost of writing col. Their loops index with
unsigned integers: Numba then skips the negative-index wraparound test that otherwise keeps LLVM
from vectorizing the inner loop. On narrow maps, whose rows of a few elements make those loops
mostly overhead, they run the gather loops instead: one loop per (channel, tap) row of col over the
whole batch, through a table of input offsets (_tap_offsets).
"""
import functools
import math

import numpy as np
from numba import njit, uint64

from ._dispatch import kernel
from ._geometry import conv_out_size, crop, out_hw, pad, tap_slices, valid_range
from ._layout import canonical, is_channel_major
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ..device import array_module

__all__ = ["im2col", "col2im", "conv_out_size"]


def _col_array(x, n, ksize, ohw, out):
    """im2col's output as (C, kh, kw, n, Ho, Wo) for n images: ``out`` (C-contiguous, (C*kh*kw, n*Ho*Wo))
    or new."""
    c = x.shape[1]
    shape = (c, *ksize, n, *ohw)
    if out is None:
        return array_module(x).empty(shape, dtype=x.dtype)
    if out.shape != (math.prod(shape[:3]), math.prod(shape[3:])) or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(f"im2col: out must be a C-contiguous {x.dtype} array of shape "
                         f"({math.prod(shape[:3])}, {math.prod(shape[3:])}), got {out.dtype} {out.shape}")
    return out.reshape(shape)


@kernel
def im2col(x, ksize, stride, padding, dilation, out=None, images=None):
    """x (N, C, H, W) -> col (C*kh*kw, N*Ho*Wo), C-contiguous: written into ``out`` if given, else a new
    array. images=(n0, n1): col of those images only (for conv2d's chunks; the Numba version then
    reads them in place, where x[n0:n1] of channel-major x would be copied to a contiguous array).
    One strided copy per tap."""
    xp = array_module(x)
    x = x if images is None else x[images[0]:images[1]]
    n, c, h, w = x.shape
    (kh, kw), ohw = ksize, out_hw((h, w), ksize, stride, padding, dilation)
    xpad = pad(xp, x, padding).transpose(1, 0, 2, 3)
    col = _col_array(x, n, ksize, ohw, out)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xpad[(..., *tap_slices(i, j, ohw, stride, dilation))]
    return col.reshape(c * kh * kw, n * ohw[0] * ohw[1])


@im2col.register("numba")
def _im2col_numba(x, ksize, stride, padding, dilation, out=None, images=None):
    """Numba, parallel over the C*kh*kw rows of col (so the 3-channel stem splits evenly too)."""
    n0, n1 = (0, x.shape[0]) if images is None else images
    c, h, w = x.shape[1:]
    cm = is_channel_major(x)
    ohw = out_hw((h, w), ksize, stride, padding, dilation)
    col = _col_array(x, n1 - n0, ksize, ohw, out)
    if ohw[1] < GATHER_BELOW:
        taps = _tap_offsets(cm, n1 - n0, c, (h, w), *map(tuple, (ksize, ohw, stride, padding, dilation)))
        parallel_chunks(_im2col_gather, chunk_count(c * len(taps)), canonical(x, cm).reshape(-1), cm, n0, c, h * w,
                        col.reshape(c, ksize[0] * ksize[1], -1), taps)
    else:
        parallel_chunks(_im2col_rows, chunk_count(c * ksize[0] * ksize[1]), canonical(x, cm), cm, n0, col, *stride,
                        *padding, *dilation)
    return col.reshape(c * ksize[0] * ksize[1], -1)


# Thresholds between the gather loops and the row loops. im2col gathers for output maps narrower
# than GATHER_BELOW columns, col2im for input maps narrower than COL2IM_GATHER_BELOW columns: there
# the rows are too short for the row loops to pay. Wider maps take the row loops, which then win.
# Both values are measured; see benchmarks/RESULTS.md (the narrow-map im2col entry).
GATHER_BELOW, COL2IM_GATHER_BELOW = 12, 6


@functools.lru_cache(maxsize=64)
def _tap_offsets(cm, n, c, hw, ksize, ohw, stride, padding, dilation):
    """(kh*kw, n*Ho*Wo) int64: for each tap and output (image, y, x), the offset in x's memory of the
    input element it reads, relative to its channel's first element (cm) or to channel c of image 0,
    -1 where that is padding. Cached (read-only): a training step asks for the same few tables
    again and again, and rebuilding one on each call is a visible part of a small-image step
    (see benchmarks/RESULTS.md)."""
    (h, w), (kh, kw), (ho, wo), (sh, sw), (ph, pw), (dh, dw) = hw, ksize, ohw, stride, padding, dilation
    iy = (np.arange(kh) * dh - ph)[:, None, None, None, None] + (np.arange(ho) * sh)[:, None]  # (kh, 1, 1, ho, 1)
    ix = (np.arange(kw) * dw - pw)[:, None, None, None] + np.arange(wo) * sw  # (kw, 1, 1, wo)
    image = (np.arange(n) * (h * w if cm else c * h * w))[:, None, None]  # (n, 1, 1)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    return _read_only(np.where(inside, image + iy * w + ix, -1).reshape(kh * kw, -1))  # (kh, kw, n, ho, wo) flattened


def _read_only(a):
    a.flags.writeable = False
    return a


@njit(cache=True, error_model="numpy")
def _im2col_gather(x, cm, n0, c_in, plane, col, taps, chunk, chunks):
    """x flat (canonical memory), col (C, kh*kw, n*Ho*Wo): col[c, t, k] = x[base + taps[t, k]], 0 where
    taps is -1; base: channel c of image n0, in planes of H*W = ``plane`` elements. For small maps,
    whose rows are too short for the row loops of _im2col_rows: one loop over a whole (c, tap) row
    of col. Loops: this chunk's rows."""
    nt, count = taps.shape
    for r in range(*chunk_range(c_in * nt, chunk, chunks)):
        c, t = r // nt, r % nt
        base = (c * x.size // c_in + n0 * plane) if cm else (n0 * c_in + c) * plane
        dst, tap = col[c, t], taps[t]
        for k in range(uint64(count)):
            o = tap[k]
            dst[k] = x[base + o] if o >= 0 else 0


@njit(cache=True, error_model="numpy")
def _im2col_rows(x, cm, n0, col, sh, sw, ph, pw, dh, dw, chunk, chunks):
    """x (C, N, H, W) if cm else (N, C, H, W), C-contiguous -> col (C, kh, kw, n, Ho, Wo), C-contiguous,
    of images n0..n0+n.
    Loops: this chunk's rows (c, i, j) of col, each filled by _im2col_row, which Numba inlines
    (inline="always"): an ordinary njit callee, once loaded from the disk cache, is called rather
    than inlined, and the called version measured slower (see benchmarks/RESULTS.md)."""
    nc, kh, kw = col.shape[:3]
    for r in range(*chunk_range(nc * kh * kw, chunk, chunks)):
        _im2col_row(x, cm, n0, col, r // (kh * kw), r // kw % kh, r % kw, sh, sw, ph, pw, dh, dw)


@njit(inline="always")
def _im2col_row(x, cm, n0, col, c, i, j, sh, sw, ph, pw, dh, dw):
    """col[c, i, j, n, y, :] = row y*sh + i*dh - ph of plane (n0 + n, c) sampled at x*sw + j*dw - pw, zero
    outside the image. Loops: n > y > x, the last a contiguous write (a strided read when sw > 1)."""
    nb, ho, wo = col.shape[3:]
    h, w = x.shape[2], x.shape[3]
    y0, y1 = valid_range(i * dh - ph, sh, h, ho)
    x0, x1 = valid_range(j * dw - pw, sw, w, wo)
    ux0, ux1, uwo, usw = uint64(x0), uint64(x1), uint64(wo), uint64(sw)
    src0 = uint64(x0 * sw + j * dw - pw)  # input column of output column x0
    for n in range(nb):
        src, dst = x[c, n0 + n] if cm else x[n0 + n, c], col[c, i, j, n]
        for y in range(ho):
            out = uint64(y)
            if y < y0 or y >= y1:
                for k in range(uwo):
                    dst[out, k] = 0
                continue
            iy = uint64(y * sh + i * dh - ph)
            for k in range(ux0):
                dst[out, k] = 0
            row, o = src[iy, src0:], dst[out, ux0:]  # views: the loop's addressing is simplest
            for k in range(ux1 - ux0):
                o[k] = row[k * usw]
            for k in range(ux1, uwo):
                dst[out, k] = 0


@kernel
def col2im(col, x_shape, ksize, stride, padding, dilation):
    """The adjoint of im2col: col (C*kh*kw, N*Ho*Wo) -> gx (N, C, H, W) in channel-major memory,
    summing the taps that overlap."""
    xp = array_module(col)
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = ksize, padding
    ohw = out_hw((h, w), ksize, stride, padding, dilation)
    col = col.reshape((c, kh, kw, n) + ohw)
    gx = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            gx[(..., *tap_slices(i, j, ohw, stride, dilation))] += col[:, i, j]
    return xp.ascontiguousarray(crop(gx, padding)).transpose(1, 0, 2, 3)


@col2im.register("numba")
def _col2im_numba(col, x_shape, ksize, stride, padding, dilation):
    """Numba, parallel over the C*N output planes, so that no two threads write one element."""
    n, c, h, w = x_shape
    ohw = out_hw((h, w), ksize, stride, padding, dilation)
    gx = np.empty((c, n, h, w), dtype=col.dtype)
    if w < COL2IM_GATHER_BELOW:
        parallel_chunks(_col2im_gather, chunk_count(c), np.ascontiguousarray(col).reshape(c, ksize[0] * ksize[1], -1),
                        gx.reshape(c, -1), _readers(n, c, (h, w), *map(tuple, (ksize, ohw, stride, padding, dilation))))
    else:
        parallel_chunks(_col2im_planes, chunk_count(c * n), np.ascontiguousarray(col).reshape(c, *ksize, n, *ohw), gx,
                        *stride, *padding, *dilation)
    return gx.transpose(1, 0, 2, 3)


@functools.lru_cache(maxsize=64)
def _readers(n, c, hw, ksize, ohw, stride, padding, dilation):
    """The inverse of _tap_offsets' channel-major table: (kh*kw, n*H*W), for each tap and input
    element the output whose window reads it through that tap (at most one), or -1. Cached, read-only."""
    taps = _tap_offsets(True, n, c, hw, ksize, ohw, stride, padding, dilation)
    inv = np.full((taps.shape[0], n * hw[0] * hw[1]), -1, np.int64)
    t, k = np.nonzero(taps >= 0)
    inv[t, taps[t, k]] = k
    return _read_only(inv)


@njit(cache=True, error_model="numpy")
def _col2im_gather(col, gx, readers, chunk, chunks):
    """col (C, kh*kw, n*Ho*Wo), gx (C, n*H*W): gx[c, k] = the sum over taps t, in order, of
    col[c, t, readers[t, k]] (those >= 0): the reference's additions in its order, so exactly equal.
    For small maps, as _im2col_gather. Loops: this chunk's channels > input elements > taps."""
    nt, size = readers.shape
    for c in range(*chunk_range(col.shape[0], chunk, chunks)):
        src, dst = col[c], gx[c]
        for k in range(uint64(size)):
            acc = dst.dtype.type(0)
            for t in range(nt):
                o = readers[t, k]
                if o >= 0:
                    acc += src[t, o]
            dst[k] = acc


@njit(cache=True, error_model="numpy")
def _col2im_planes(col, gx, sh, sw, ph, pw, dh, dw, chunk, chunks):
    """col (C, kh, kw, N, Ho, Wo) -> gx (C, N, H, W), both C-contiguous: gx[c, n] = 0, then each tap
    (i, j) in turn adds its (Ho, Wo) block at rows y*sh + i*dh - ph, columns x*sw + j*dw - pw (those
    in the padding dropped). The reference's order of additions, so the results are exactly equal.
    Loops: this chunk's planes (c, n) > i > j > y > x; the plane stays in cache across the taps."""
    nc, kh, kw, nb, ho, wo = col.shape
    h, w = gx.shape[2], gx.shape[3]
    for p in range(*chunk_range(nc * nb, chunk, chunks)):
        c, n = p // nb, p % nb
        dst = gx[c, n]
        dst[:] = 0
        for i in range(kh):
            y0, y1 = valid_range(i * dh - ph, sh, h, ho)
            for j in range(kw):
                x0, x1 = valid_range(j * dw - pw, sw, w, wo)
                ux0, usw = uint64(x0), uint64(sw)
                dst0 = uint64(x0 * sw + j * dw - pw)  # input column of output column x0
                src = col[c, i, j, n]
                for y in range(y0, y1):
                    uy, iy = uint64(y), uint64(y * sh + i * dh - ph)
                    for k in range(uint64(x1 - x0)):
                        dst[iy, dst0 + k * usw] += src[uy, ux0 + k]
