"""Batch-norm pieces over (N, C, L) arrays (an NCHW map is passed as (N, C, H*W)); per-channel
vectors have shape (C,). With xhat = (x - mean) * invstd:  y = weight * xhat + bias.

The Numba versions work on each channel's N rows of L contiguous values (NCHW or channel-major
memory, see _layout) and keep one channel's work in one thread, so that a second pass over the
channel (bn_stats, bn_backward) reads it from cache. Sums accumulate in float64; the reductions are
compiled with fastmath's reassociation only, which lets LLVM vectorize them (NaN and inf still
propagate).
"""
import numpy as np
from numba import njit, prange

from ._dispatch import kernel
from ._layout import canonical, is_channel_major, restore

__all__ = ["bn_stats", "bn_forward", "bn_backward"]


@kernel
def bn_stats(x):
    """x (N, C, L) -> (mean, biased var), each (C,), in x's dtype (two passes, for accuracy)."""
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
    return mean, var


@bn_stats.register("numba")
def _bn_stats_numba(x):
    cm = is_channel_major(x)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    _bn_stats_loops(canonical(x, cm), cm, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _bn_stats_loops(x, cm, mean, var):
    """x (C, N, L) if cm else (N, C, L), C-contiguous -> mean, var (C,) float64, two passes per channel:
    mean = sum(x) / m, var = sum((x - mean)^2) / m with m = N*L.
    Loops: channels in parallel > pass > n > l (contiguous)."""
    nc, nb = (x.shape[0], x.shape[1]) if cm else (x.shape[1], x.shape[0])
    m = nb * x.shape[2]
    for c in prange(nc):
        s = 0.0
        for n in range(nb):
            row = x[c, n] if cm else x[n, c]
            for l in range(row.size):  # indexing, not `for v in row`: 8x faster (vectorized)
                s += row[l]
        mu = s / m
        q = 0.0
        for n in range(nb):
            row = x[c, n] if cm else x[n, c]
            for l in range(row.size):
                d = row[l] - mu
                q += d * d
        mean[c], var[c] = mu, q / m


@kernel
def bn_forward(x, mean, invstd, weight, bias):
    """y = x * scale + shift with scale = weight * invstd, shift = bias - mean * scale (weight, bias may be None)."""
    scale = invstd if weight is None else weight * invstd
    shift = -mean * scale if bias is None else bias - mean * scale
    return x * scale[:, None] + shift[:, None]


@bn_forward.register("numba")
def _bn_forward_numba(x, mean, invstd, weight, bias):
    """Numba: the reference's scale and shift, then one pass (exactly the reference's arithmetic)."""
    scale = invstd if weight is None else weight * invstd
    shift = -mean * scale if bias is None else bias - mean * scale
    return _affine(x, scale, shift)


def _affine(x, scale, shift):
    """x * scale[c] + shift[c] per channel c, in x's memory layout."""
    cm = is_channel_major(x)
    xc = canonical(x, cm)
    y = np.empty_like(xc)
    _affine_loops(xc, cm, scale, shift, y)
    return restore(y, cm)


@njit(cache=True, parallel=True)
def _affine_loops(x, cm, scale, shift, y):
    """x, y (C, N, L) if cm else (N, C, L), C-contiguous: y[n, c, l] = x[n, c, l] * scale[c] + shift[c].
    Loops: rows (c, n) in parallel > l (contiguous, vectorized)."""
    nc, nb = (x.shape[0], x.shape[1]) if cm else (x.shape[1], x.shape[0])
    for r in prange(nc * nb):
        c, n = r // nb, r % nb
        src, dst = (x[c, n], y[c, n]) if cm else (x[n, c], y[n, c])
        a, b = scale[c], shift[c]
        for l in range(src.size):
            dst[l] = src[l] * a + b


@kernel
def bn_backward(gy, x, mean, invstd, weight, training):
    """-> (gx, gweight, gbias). In training the batch statistics depend on x, which gives
    gx = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)) (means over N and L); in eval
    the statistics are constants: gx = weight * invstd * gy."""
    m = gy.shape[0] * gy.shape[2]
    xhat = (x - mean[:, None]) * invstd[:, None]
    gbias = gy.sum(axis=(0, 2))
    gweight = (gy * xhat).sum(axis=(0, 2))
    scale = invstd if weight is None else weight * invstd
    if training:
        gx = (gy - (gbias / m)[:, None] - xhat * (gweight / m)[:, None]) * scale[:, None]
    else:
        gx = gy * scale[:, None]
    return gx, gweight, gbias


@bn_backward.register("numba")
def _bn_backward_numba(gy, x, mean, invstd, weight, training):
    """Numba: per channel one pass for the two sums, one for gx (in gy's memory layout)."""
    scale = invstd if weight is None else weight * invstd
    cm = is_channel_major(gy)
    g, xc = canonical(gy, cm), canonical(x, cm)
    gx = np.empty_like(g)
    sums = np.empty((2, gy.shape[1]))
    _bn_backward_loops(g, xc, cm, mean, invstd, scale, training, gx, sums)
    gbias, dot = sums
    return restore(gx, cm), (dot * invstd).astype(gy.dtype), gbias.astype(gy.dtype)


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _bn_backward_loops(gy, x, cm, mean, invstd, scale, training, gx, sums):
    """gy, x, gx (C, N, L) if cm else (N, C, L), C-contiguous; per channel (m = N*L values):
    sums = (sum(gy), sum(gy * (x - mean))) in float64, then
    gx = scale * (gy - sum(gy)/m - (x - mean) * invstd^2 * sum(gy * (x - mean))/m) in training,
    gx = scale * gy in eval. Loops: channels in parallel > pass > n > l (contiguous)."""
    nc, nb = (x.shape[0], x.shape[1]) if cm else (x.shape[1], x.shape[0])
    m = nb * x.shape[2]
    for c in prange(nc):
        mu = np.float64(mean[c])
        sg = sgx = 0.0
        for n in range(nb):
            g, v = (gy[c, n], x[c, n]) if cm else (gy[n, c], x[n, c])
            for l in range(g.size):
                sg += g[l]
                sgx += g[l] * (v[l] - mu)
        sums[0, c], sums[1, c] = sg, sgx
        k = np.float64(scale[c])
        k0 = -k * sg / m if training else 0.0
        k1 = -k * np.float64(invstd[c]) ** 2 * sgx / m if training else 0.0
        for n in range(nb):
            g, v, out = (gy[c, n], x[c, n], gx[c, n]) if cm else (gy[n, c], x[n, c], gx[n, c])
            if training:
                for l in range(g.size):
                    out[l] = k * g[l] + k0 + k1 * (v[l] - mu)
            else:
                for l in range(g.size):
                    out[l] = scale[c] * g[l]
