"""Batch-norm pieces over (N, C, L) arrays (an NCHW map is passed as (N, C, H*W)); per-channel
vectors have shape (C,). With xhat = (x - mean) * invstd:  y = weight * xhat + bias.
"""
from ._dispatch import kernel

__all__ = ["bn_stats", "bn_forward", "bn_backward"]


@kernel
def bn_stats(x):
    """x (N, C, L) -> (mean, biased var), each (C,), in x's dtype (two passes, for accuracy)."""
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
    return mean, var


@kernel
def bn_forward(x, mean, invstd, weight, bias):
    """y = x * scale + shift with scale = weight * invstd, shift = bias - mean * scale (weight, bias may be None)."""
    scale = invstd if weight is None else weight * invstd
    shift = -mean * scale if bias is None else bias - mean * scale
    return x * scale[:, None] + shift[:, None]


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
