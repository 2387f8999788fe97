"""Max and average pooling over NCHW maps, forward and backward, with PyTorch's geometry.

Outputs keep the memory layout of the input (NCHW or channel-major). Windows: out[n, c, y, x] pools
xpad[n, c, y*sh + i*dh, x*sw + j*dw] over taps (i, j); the output size comes from
_geometry.pool_out_size (ceil_mode included), computed by the caller and passed as ohw.

The Numba versions work on the N*C planes in parallel (layout-agnostic: see _layout.to_planes) and
visit only the taps inside the input (tap ranges precomputed per output row and column), which is
the same as padding with -inf (max) or 0 (average). Indices are unsigned so that Numba skips its
negative-index wraparound test (see im2col).
"""
import numpy as np
from numba import njit, uint64

from ._dispatch import kernel
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ._geometry import crop, pad2, pool_padding, tap_ranges, tap_slices, valid_range
from ._layout import from_planes, is_channel_major, to_planes
from ..device import array_module

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


@maxpool_forward.register("numba")
def _maxpool_forward_numba(x, ksize, stride, padding, dilation, ohw):
    n, c = x.shape[:2]
    cm = is_channel_major(x)
    planes = to_planes(x, cm)
    y = np.empty((len(planes), *ohw), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    parallel_chunks(_maxpool_forward_planes, chunk_count(len(planes)), planes, y, arg, *ksize, *stride, *padding,
                    *dilation)
    return from_planes(y, n, c, cm), from_planes(arg, n, c, cm)


# Output columns from which a NaN-free plane is pooled a row at a time (_maxpool_rows): rows this
# wide keep its vectorized loop busy; on narrower ones it is mostly loop overhead and loses to the
# window loops. Measured; see benchmarks/RESULTS.md.
_ROWS_MIN_WIDTH = 36


@njit(cache=True, error_model="numpy")
def _maxpool_forward_planes(x, y, arg, kh, kw, sh, sw, ph, pw, dh, dw, chunk, chunks):
    """x (P, H, W) -> y, arg (P, Ho, Wo): y[p, oy, ox] = max of x[p, oy*sh - ph + i*dh, ox*sw - pw + j*dw]
    over the taps inside x, arg its tap i*kw + j; ties keep the first; a NaN wins, the window's last
    one, as in the reference (`v > best or v != v`).
    Loops: this chunk's planes, each by _maxpool_rows (vectorized) when its output rows are at least
    _ROWS_MIN_WIDTH wide and it holds no NaN; a NaN-free plane of narrower rows under a 3x3 window
    (ResNet's stem on small images) by _maxpool_3x3; else by _maxpool_windows (a window at a time, the
    NaN rule included: the NaN test keeps LLVM from vectorizing, so it is kept out of the common case)."""
    h, w = x.shape[1], x.shape[2]
    ho, wo = y.shape[1], y.shape[2]
    rows, cols = tap_ranges(ho, sh, ph, dh, h, kh), tap_ranges(wo, sw, pw, dw, w, kw)
    for p in range(*chunk_range(x.shape[0], chunk, chunks)):
        src = x[p]
        finite = wo >= _ROWS_MIN_WIDTH or (kh == 3 and kw == 3)  # only the fast paths need the scan
        for iy in range(h if finite else 0):
            for ix in range(w):
                finite &= src[iy, ix] == src[iy, ix]  # False from the first NaN on
        if finite and wo >= _ROWS_MIN_WIDTH:
            _maxpool_rows(src, y[p], arg[p], rows, kw, sh, sw, ph, pw, dh, dw)
        elif finite and kh == 3 and kw == 3:
            _maxpool_3x3(src, y[p], arg[p], sh, sw, ph, pw, dh, dw)
        else:
            _maxpool_windows(src, y[p], arg[p], rows, cols, kw, sh, sw, ph, pw, dh, dw)


@njit(inline="always")
def _maxpool_rows(src, out, idx, rows, kw, sh, sw, ph, pw, dh, dw):
    """One NaN-free plane, an output row at a time: the row starts at -inf, then each tap (i, j) in
    window order updates the outputs its column range reaches where its value is greater (the first
    maximum wins ties, as in window order). Loops: oy > i > j > _update_row."""
    w, wo = src.shape[1], out.shape[1]
    neg_inf = src.dtype.type(-np.inf)
    for oy in range(out.shape[0]):
        o, d = out[oy], idx[oy]
        for ox in range(wo):
            o[ox], d[ox] = neg_inf, 0
        for i in range(rows[oy, 0], rows[oy, 1]):
            row = src[uint64(oy * sh - ph + i * dh)]
            for j in range(kw):
                x0, x1 = valid_range(j * dw - pw, sw, w, wo)
                k, n = np.int32(i * kw + j), uint64(max(x1 - x0, 0))
                taps, best, arg = row[x0 * sw + j * dw - pw:], o[x0:], d[x0:]
                # a constant stride lets LLVM vectorize the update (a runtime one keeps it scalar)
                if sw == 1:
                    _update_row(taps, best, arg, n, uint64(1), k)
                elif sw == 2:
                    _update_row(taps, best, arg, n, uint64(2), k)
                else:
                    _update_row(taps, best, arg, n, uint64(sw), k)


@njit(inline="always")
def _update_row(taps, best, arg, n, stride, k):
    """best[t], arg[t] = taps[t*stride], k where that is greater, for t < n: a compare-and-select over
    contiguous outputs, vectorized."""
    for t in range(n):
        v, b = taps[t * stride], best[t]
        greater = v > b
        best[t] = v if greater else b
        arg[t] = k if greater else arg[t]


@njit(cache=True)
def _maxpool_3x3(src, out, idx, sh, sw, ph, pw, dh, dw):
    """One NaN-free plane under a 3x3 window, a window at a time with its nine taps written out: each
    a compare and select, skipped where the tap falls outside the plane (an out-of-range row or column
    stands at index 0 and is never read). _maxpool_windows's loops of a variable 2 or 3 taps are
    mostly overhead and mispredicted branches, on small and large planes alike. Called per plane, not
    inlined into the loop over planes: the same speed, and _maxpool_forward_planes compiles into an empty
    cache much faster (see benchmarks/RESULTS.md)."""
    h, w = src.shape
    neg_inf = src.dtype.type(-np.inf)
    for oy in range(out.shape[0]):
        y0 = oy * sh - ph
        y1, y2 = y0 + dh, y0 + 2 * dh
        a0, a1, a2 = 0 <= y0 < h, 0 <= y1 < h, 0 <= y2 < h
        r0, r1, r2 = src[y0 if a0 else 0], src[y1 if a1 else 0], src[y2 if a2 else 0]
        for ox in range(out.shape[1]):
            x0 = ox * sw - pw
            x1, x2 = x0 + dw, x0 + 2 * dw
            b0, b1, b2 = 0 <= x0 < w, 0 <= x1 < w, 0 <= x2 < w
            c0, c1, c2 = x0 if b0 else 0, x1 if b1 else 0, x2 if b2 else 0
            best, k = neg_inf, np.int32(0)
            if a0:
                if b0: best, k = _greater(r0[c0], best, k, 0)
                if b1: best, k = _greater(r0[c1], best, k, 1)
                if b2: best, k = _greater(r0[c2], best, k, 2)
            if a1:
                if b0: best, k = _greater(r1[c0], best, k, 3)
                if b1: best, k = _greater(r1[c1], best, k, 4)
                if b2: best, k = _greater(r1[c2], best, k, 5)
            if a2:
                if b0: best, k = _greater(r2[c0], best, k, 6)
                if b1: best, k = _greater(r2[c1], best, k, 7)
                if b2: best, k = _greater(r2[c2], best, k, 8)
            out[oy, ox], idx[oy, ox] = best, k


@njit(inline="always")
def _greater(v, best, k, tap):
    """(v, tap) if v > best, else (best, k): a select, not a branch."""
    greater = v > best
    return (v if greater else best), (np.int32(tap) if greater else k)


@njit(inline="always")
def _maxpool_windows(src, out, idx, rows, cols, kw, sh, sw, ph, pw, dh, dw):
    """One plane, a window at a time, the NaN rule included. Loops: oy > ox > i > j (the window's rows
    are in cache); a window holding a NaN is scanned again for its last NaN."""
    for oy in range(out.shape[0]):
        for ox in range(out.shape[1]):
            best, k, nan = src.dtype.type(-np.inf), 0, False
            for i in range(rows[oy, 0], rows[oy, 1]):
                iy = uint64(oy * sh - ph + i * dh)
                for j in range(cols[ox, 0], cols[ox, 1]):
                    v = src[iy, uint64(ox * sw - pw + j * dw)]
                    if v > best:
                        best, k = v, i * kw + j
                    nan |= v != v
            if nan:
                for i in range(rows[oy, 0], rows[oy, 1]):
                    iy = uint64(oy * sh - ph + i * dh)
                    for j in range(cols[ox, 0], cols[ox, 1]):
                        v = src[iy, uint64(ox * sw - pw + j * dw)]
                        if v != v:
                            best, k = v, i * kw + j
            out[oy, ox], idx[oy, ox] = best, k


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


@maxpool_backward.register("numba")
def _maxpool_backward_numba(gy, argmax, x_shape, ksize, stride, padding, dilation):
    """Numba; the sums over overlapping windows are in window order, not the reference's tap order,
    so results equal the reference's within rounding."""
    n, c, h, w = x_shape
    cm = is_channel_major(gy)
    gx = np.empty((n * c, h, w), dtype=gy.dtype)
    parallel_chunks(_maxpool_backward_planes, chunk_count(n * c), to_planes(gy, cm), to_planes(argmax, cm), gx,
                    *ksize, *stride, *padding, *dilation)
    return from_planes(gx, n, c, cm)


@njit(cache=True, error_model="numpy")
def _maxpool_backward_planes(gy, arg, gx, kh, kw, sh, sw, ph, pw, dh, dw, chunk, chunks):
    """gy, arg (P, Ho, Wo) -> gx (P, H, W): gx = 0, then each gy[p, oy, ox] is added at its window's
    tap arg = i*kw + j, unless that tap lies in the padding (a window of only -inf keeps tap 0).
    Loops: this chunk's planes > oy > ox; the tap offsets are looked up, not divided out."""
    h, w = gx.shape[1], gx.shape[2]
    ho, wo = gy.shape[1], gy.shape[2]
    taps = np.arange(kh * kw)
    di, dj = taps // kw * dh, taps % kw * dw
    for p in range(*chunk_range(gy.shape[0], chunk, chunks)):
        src, idx, dst = gy[p], arg[p], gx[p]
        dst[:] = 0
        for oy in range(ho):
            for ox in range(wo):
                t = idx[oy, ox]
                iy, ix = oy * sh - ph + di[t], ox * sw - pw + dj[t]
                if 0 <= iy < h and 0 <= ix < w:
                    dst[uint64(iy), uint64(ix)] += src[oy, ox]


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


@avgpool_forward.register("numba")
def _avgpool_forward_numba(x, ksize, stride, padding, ohw, divisor):
    n, c = x.shape[:2]
    cm = is_channel_major(x)
    planes = to_planes(x, cm)
    y = np.empty((len(planes), *ohw), dtype=x.dtype)
    parallel_chunks(_avgpool_forward_planes, chunk_count(len(planes)), planes, np.ascontiguousarray(divisor), y,
                    *ksize, *stride, *padding)
    return from_planes(y, n, c, cm)


@njit(cache=True, error_model="numpy")
def _avgpool_forward_planes(x, divisor, y, kh, kw, sh, sw, ph, pw, chunk, chunks):
    """x (P, H, W), divisor (Ho, Wo) -> y (P, Ho, Wo): y[p, oy, ox] = (sum of x[p, oy*sh - ph + i, ox*sw - pw + j]
    over the taps inside x, in tap order) / divisor[oy, ox]: the reference's arithmetic, exactly.
    Loops: this chunk's planes > oy > ox > i > j."""
    h, w = x.shape[1], x.shape[2]
    ho, wo = y.shape[1], y.shape[2]
    rows, cols = tap_ranges(ho, sh, ph, 1, h, kh), tap_ranges(wo, sw, pw, 1, w, kw)
    for p in range(*chunk_range(x.shape[0], chunk, chunks)):
        src, out = x[p], y[p]
        for oy in range(ho):
            for ox in range(wo):
                s = x.dtype.type(0)
                for i in range(rows[oy, 0], rows[oy, 1]):
                    iy = uint64(oy * sh - ph + i)
                    for j in range(cols[ox, 0], cols[ox, 1]):
                        s += src[iy, uint64(ox * sw - pw + j)]
                out[oy, ox] = s / divisor[oy, ox]


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


@avgpool_backward.register("numba")
def _avgpool_backward_numba(gy, x_shape, ksize, stride, padding, divisor):
    n, c, h, w = x_shape
    cm = is_channel_major(gy)
    gx = np.empty((n * c, h, w), dtype=gy.dtype)
    parallel_chunks(_avgpool_backward_planes, chunk_count(n * c), to_planes(gy, cm), np.ascontiguousarray(divisor), gx,
                    *ksize, *stride, *padding)
    return from_planes(gx, n, c, cm)


@njit(cache=True, error_model="numpy")
def _avgpool_backward_planes(gy, divisor, gx, kh, kw, sh, sw, ph, pw, chunk, chunks):
    """gy (P, Ho, Wo), divisor (Ho, Wo) -> gx (P, H, W): gx = 0, then for each tap (i, j) in turn every
    gy[p, oy, ox] / divisor[oy, ox] is added at (oy*sh - ph + i, ox*sw - pw + j) if inside: the
    reference's order of additions, so the results are exactly equal.
    Loops: this chunk's planes > i > j > oy > ox; the plane stays in cache across the taps. The
    plane's gy / divisor is computed once, into a buffer allocated per plane (not per element)."""
    h, w = gx.shape[1], gx.shape[2]
    ho, wo = gy.shape[1], gy.shape[2]
    for p in range(*chunk_range(gy.shape[0], chunk, chunks)):
        src, dst = gy[p] / divisor, gx[p]
        dst[:] = 0
        for i in range(kh):
            y0, y1 = valid_range(i - ph, sh, h, ho)
            for j in range(kw):
                x0, x1 = valid_range(j - pw, sw, w, wo)
                for oy in range(y0, y1):
                    iy = uint64(oy * sh - ph + i)
                    for ox in range(x0, x1):
                        dst[iy, uint64(ox * sw - pw + j)] += src[oy, ox]
