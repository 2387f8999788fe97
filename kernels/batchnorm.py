"""Batch-norm pieces over (N, C, L) arrays (an NCHW map is passed as (N, C, H*W)); per-channel
vectors have shape (C,). With xhat = (x - mean) * invstd:  y = weight * xhat + bias.
bn_forward and bn_backward can fuse the ReLU that follows most batch norms in a ResNet (relu=True):
forward writes max(y, 0) in its one pass, backward recomputes the ReLU's mask from x, so the ReLU
costs no pass of its own and no saved output. The forward kernels also add a residual before the
ReLU (a residual block's output, relu(bn(x) + identity)): one pass where a separate addition would
write y and read it back.

The Numba versions work on each channel's N rows of L contiguous values in NCHW memory, or on its
one row of N*L in channel-major memory (see _layout; _rows), and keep one channel's work in one
thread, so that a second pass over the channel (bn_stats, bn_backward) reads it from cache. Sums
accumulate in float64; the reductions are compiled with fastmath's reassociation only, which lets
LLVM vectorize them (NaN and inf still propagate).
"""
import numpy as np
from numba import njit

from ._dispatch import kernel
from ._layout import canonical, is_channel_major, restore
from ._parallel import chunk_count, chunk_range, parallel_chunks
from ..device import array_module

__all__ = ["bn_stats", "bn_forward", "bn_train_forward", "bn_backward"]


def _rows(x):
    """(cm, xc): x's layout and its C-contiguous form, (N, C, L) in NCHW, or (C, 1, N*L) in channel-major
    memory, where a channel's values are contiguous: one long row each instead of N short ones (on
    small maps, down to L = 1, short rows make the loops mostly overhead; see benchmarks/RESULTS.md)."""
    cm = is_channel_major(x)
    xc = canonical(x, cm)
    return cm, (xc.reshape(xc.shape[0], 1, -1) if cm else xc)


def _unrows(y, cm, shape):
    """Inverse of _rows: the (N, C, L) view of y."""
    return restore(y.reshape(shape[1], shape[0], -1), cm) if cm else y


@kernel
def bn_stats(x):
    """x (N, C, L) -> (mean, biased var), each (C,), in x's dtype (two passes, for accuracy)."""
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
    return mean, var


@bn_stats.register("numba")
def _bn_stats_numba(x):
    cm, xc = _rows(x)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    parallel_chunks(_bn_stats_chunk, chunk_count(x.shape[1]), xc, cm, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_stats_chunk(x, cm, mean, var, chunk, chunks):
    """x (C, N, L) if cm else (N, C, L), C-contiguous -> mean, var (C,) float64, for this chunk's
    channels. Loops: channels > _channel_stats."""
    for c in range(*chunk_range(mean.size, chunk, chunks)):
        mean[c], var[c] = _channel_stats(x, cm, c)


@njit(inline="always", fastmath={"reassoc"})
def _channel_stats(x, cm, c):
    """(mean, biased var) of channel c in float64, two passes: mean = sum(x) / m, var = sum((x - mean)^2) / m
    with m = N*L. Loops: pass > n > l (contiguous)."""
    nb = x.shape[1] if cm else x.shape[0]
    m = nb * x.shape[2]
    s = 0.0
    for n in range(nb):
        row = x[c, n] if cm else x[n, c]
        for l in range(row.size):  # indexing, not `for v in row`: LLVM vectorizes only this form
            s += row[l]
    mu = s / m
    q = 0.0
    for n in range(nb):
        row = x[c, n] if cm else x[n, c]
        for l in range(row.size):
            d = row[l] - mu
            q += d * d
    return mu, q / m


def scale_shift(mean, invstd, weight, bias):
    """Per-channel (scale, shift) with y = x * scale + shift: scale = weight * invstd,
    shift = bias - mean * scale (weight and bias may be None: 1 and 0)."""
    scale = invstd if weight is None else weight * invstd
    return scale, (-mean * scale if bias is None else bias - mean * scale)


@kernel
def bn_forward(x, mean, invstd, weight, bias, relu=False, residual=None):
    """y = x * scale + shift (see scale_shift), plus ``residual`` (x's shape) if given; relu=True fuses
    a ReLU after it: y = max(y, 0)."""
    scale, shift = scale_shift(mean, invstd, weight, bias)
    y = x * scale[:, None] + shift[:, None]
    if residual is not None:
        y += residual
    return array_module(y).maximum(y, 0, out=y) if relu else y


@bn_forward.register("numba")
def _bn_forward_numba(x, mean, invstd, weight, bias, relu=False, residual=None):
    """Numba: one pass, exactly the reference's arithmetic."""
    cm, xc = _rows(x)
    y = np.empty_like(xc)
    rows = x.shape[0] * x.shape[1]
    parallel_chunks(_bn_forward_chunk, chunk_count(rows), xc, cm, *scale_shift(mean, invstd, weight, bias), relu,
                    *_residual(residual, cm, xc), y)
    return _unrows(y, cm, x.shape)


def _residual(residual, cm, xc):
    """(add, r) for the Numba loops: r the residual in xc's canonical form, or xc itself (unread) when
    there is none, so that one compiled loop serves both."""
    if residual is None:
        return False, xc
    return True, canonical(residual, cm).reshape(xc.shape)


@njit(cache=True, error_model="numpy")
def _bn_forward_chunk(x, cm, scale, shift, relu, add, res, y, chunk, chunks):
    """x, res, y (C, N, L) if cm else (N, C, L), C-contiguous: y[n, c, l] = x[n, c, l] * scale[c] + shift[c],
    plus res[n, c, l] if add, then max(y, 0) if relu (NaN kept, as np.maximum), for this chunk's
    rows (c, n). Loops: rows > _affine_row."""
    nc, nb = (x.shape[0], x.shape[1]) if cm else (x.shape[1], x.shape[0])
    for r in range(*chunk_range(nc * nb, chunk, chunks)):
        c, n = r // nb, r % nb
        src, dst, rr = (x[c, n], y[c, n], res[c, n]) if cm else (x[n, c], y[n, c], res[n, c])
        _affine_row(src, dst, scale[c], shift[c], relu, add, rr)


@njit(inline="always")
def _affine_row(src, dst, a, b, relu, add, res):
    """dst = src * a + b (+ res if add), then 0 where that is < 0 if relu (NaN kept). One contiguous
    row, vectorized (LLVM unswitches the loop on add)."""
    for l in range(src.size):
        v = src[l] * a + b
        if add:
            v += res[l]
        dst[l] = 0 if relu and v < 0 else v


@kernel
def bn_train_forward(x, weight, bias, eps, relu=False, residual=None):
    """bn_stats and bn_forward over the batch's own statistics in one: -> (y, mean, var, invstd),
    invstd = 1 / sqrt(var + eps), the statistics (C,) in x's dtype."""
    mean, var = bn_stats.impls["numpy"](x)
    invstd = 1 / array_module(x).sqrt(var + x.dtype.type(eps))
    return bn_forward.impls["numpy"](x, mean, invstd, weight, bias, relu, residual), mean, var, invstd


@bn_train_forward.register("numba")
def _bn_train_forward_numba(x, weight, bias, eps, relu=False, residual=None):
    """Numba: per channel, both statistics passes and the normalizing pass in one task, so that the
    second and third read the channel from cache (bn_stats then bn_forward read x twice from memory).
    The same arithmetic as those two kernels, so the same results."""
    cm, xc = _rows(x)
    y = np.empty_like(xc)
    stats = np.empty((3, x.shape[1]), dtype=x.dtype)  # mean, var, invstd
    one = np.ones(x.shape[1], dtype=x.dtype)
    parallel_chunks(_bn_train_forward_chunk, chunk_count(x.shape[1]), xc, cm, one if weight is None else weight,
                    0 * one if bias is None else bias, x.dtype.type(eps), relu, *_residual(residual, cm, xc), y, stats)
    return (_unrows(y, cm, x.shape), *stats)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_train_forward_chunk(x, cm, weight, bias, eps, relu, add, res, y, stats, chunk, chunks):
    """x, res, y (C, N, L) if cm else (N, C, L), C-contiguous; stats (3, C) in x's dtype: mean, var,
    invstd = 1 / sqrt(var + eps), then y as _bn_forward_chunk with scale = weight * invstd,
    shift = bias - mean * scale, for this chunk's channels. Loops: channels > _channel_stats, then
    n > _affine_row."""
    one = x.dtype.type(1)
    for c in range(*chunk_range(weight.size, chunk, chunks)):
        mu, var = _channel_stats(x, cm, c)
        mean, v = x.dtype.type(mu), x.dtype.type(var)
        invstd = one / np.sqrt(v + eps)
        a = weight[c] * invstd
        b = bias[c] - mean * a
        stats[0, c], stats[1, c], stats[2, c] = mean, v, invstd
        for n in range(x.shape[1] if cm else x.shape[0]):
            src, dst, rr = (x[c, n], y[c, n], res[c, n]) if cm else (x[n, c], y[n, c], res[n, c])
            _affine_row(src, dst, a, b, relu, add, rr)


@kernel
def bn_backward(gy, x, mean, invstd, weight, training, bias=None, relu=False):
    """-> (gx, gweight, gbias). In training the batch statistics depend on x, which gives
    gx = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)) (means over N and L); in eval
    the statistics are constants: gx = weight * invstd * gy. relu=True: gy is the gradient of the
    fused relu(bn(x)) of bn_forward(relu=True); the ReLU's mask y > 0 is recomputed from x (with bias)."""
    m = gy.shape[0] * gy.shape[2]
    scale, shift = scale_shift(mean, invstd, weight, bias)
    if relu:
        gy = array_module(gy).where(x * scale[:, None] + shift[:, None] > 0, gy, 0)
    xhat = (x - mean[:, None]) * invstd[:, None]
    gbias = gy.sum(axis=(0, 2))
    gweight = (gy * xhat).sum(axis=(0, 2))
    if training:
        gx = (gy - (gbias / m)[:, None] - xhat * (gweight / m)[:, None]) * scale[:, None]
    else:
        gx = gy * scale[:, None]
    return gx, gweight, gbias


@bn_backward.register("numba")
def _bn_backward_numba(gy, x, mean, invstd, weight, training, bias=None, relu=False):
    """Numba: per channel one pass for the two sums, one for gx (in gy's memory layout)."""
    cm, g = _rows(gy)
    xc = canonical(x, cm).reshape(g.shape)  # x in gy's layout
    gx = np.empty_like(g)
    sums = np.empty((2, gy.shape[1]))
    parallel_chunks(_bn_backward_chunk, chunk_count(gy.shape[1]), g, xc, cm, mean, invstd,
                    *scale_shift(mean, invstd, weight, bias), training, relu, gx, sums)
    gbias, dot = sums
    return _unrows(gx, cm, gy.shape), (dot * invstd).astype(gy.dtype), gbias.astype(gy.dtype)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_backward_chunk(gy, x, cm, mean, invstd, scale, shift, training, relu, gx, sums, chunk, chunks):
    """gy, x, gx (C, N, L) if cm else (N, C, L), C-contiguous; per channel (m = N*L values), with
    g = gy, or gy where x * scale + shift > 0 else 0 if relu (the forward's float32 arithmetic):
    sums = (sum(g), sum(g * (x - mean))) in float64, then in x's dtype, as the reference,
    gx = scale * (g - sum(g)/m - (x - mean) * invstd^2 * sum(g * (x - mean))/m) in training,
    gx = scale * g in eval, for this chunk's channels. Loops: channels > pass > n > l (contiguous,
    vectorized).
    The relu test is hoisted out of the summing loop by hand: LLVM keeps that loop scalar otherwise."""
    nc, nb = (x.shape[0], x.shape[1]) if cm else (x.shape[1], x.shape[0])
    m = nb * x.shape[2]
    for c in range(*chunk_range(nc, chunk, chunks)):
        mu, a, b = mean[c], scale[c], shift[c]
        zero = gy.dtype.type(0)
        sg = sgx = 0.0
        for n in range(nb):
            g, v = (gy[c, n], x[c, n]) if cm else (gy[n, c], x[n, c])
            if relu:
                for l in range(g.size):
                    gl = g[l] if v[l] * a + b > 0 else zero
                    sg += gl
                    sgx += gl * np.float64(v[l] - mu)
            else:
                for l in range(g.size):
                    sg += g[l]
                    sgx += g[l] * np.float64(v[l] - mu)
        sums[0, c], sums[1, c] = sg, sgx
        k0, k1 = gy.dtype.type(-a * sg / m), gy.dtype.type(-a * invstd[c] ** 2 * sgx / m)
        for n in range(nb):
            g, v, out = (gy[c, n], x[c, n], gx[c, n]) if cm else (gy[n, c], x[n, c], gx[n, c])
            for l in range(g.size):
                gl = g[l] if not relu or v[l] * a + b > 0 else zero
                out[l] = a * gl + k0 + k1 * (v[l] - mu) if training else a * gl
