"""SyncBatchNorm: batch normalization with the statistics of the global batch, every rank's
samples together, for when each rank's share is too small for good statistics (large models, a few
images per GPU).

Forward: each rank r sums, per channel, its n_r values shifted by its own mean c_r (rounded to x's
dtype): S_r = sum(x - c_r), Q_r = sum((x - c_r)^2), in float64; one all_gather of (n_r, c_r, S_r, Q_r)
gives the global mean = sum_r (n_r c_r + S_r) / M over the M values of all ranks, and the biased
variance = sum_r (Q_r + 2 d_r S_r + n_r d_r^2) / M with d_r = c_r - mean (expand (x - c_r + d_r)^2).
Shifting first matters: the plain E[x^2] - mean^2 subtracts two large numbers where |mean| >> std,
and float32 squares carry too few digits for that (the variance loses about log10(mean^2 / var) of
their 7 digits; one process's BatchNorm takes two passes over x instead). Backward: with xhat the
normalized input, scale = weight * invstd and g the output's gradient,
    dx = scale * (g - sum(g) / M - xhat * sum(g * xhat) / M),
sums again over the global batch: one all_reduce of (sum g, sum g * xhat). weight's and bias's
gradients stay the rank's own sums, sum(g * xhat) and sum(g): DistributedDataParallel averages
them with the other parameters' gradients.
"""
import numpy as np

from .. import functional as F
from .. import kernels
from ..autograd.function import Function
from ..device import array_module
from ..nn.layers import BatchNorm2d
from . import collectives as dist


class SyncBatchNormFunction(Function):
    """Training-mode batch norm over all ranks' batches, x (N, C, *) -> y of x's shape; running_mean
    and running_var (C,) arrays updated in place as BatchNorm's, with the unbiased global variance."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        c = x3.shape[1]
        rows = dist.all_gather(_shifted_sums(x3))  # each rank's (n_r, c_r, S_r, Q_r), in one
        counts, shifts, s, q = rows[:, :1], rows[:, 1:1 + c], rows[:, 1 + c:1 + 2 * c], rows[:, 1 + 2 * c:]
        m = float(counts.sum())
        mean = (counts * shifts + s).sum(axis=0) / m
        d = shifts - mean
        var = (q + 2 * d * s + counts * d * d).sum(axis=0) / m
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * m / (m - 1)) * var.astype(running_var.dtype)
        mean, invstd = mean.astype(x.dtype), (1 / array_module(x).sqrt(var + eps)).astype(x.dtype)
        ctx.save_for_backward(x3, mean, invstd, weight)
        ctx.count = m
        return kernels.bn_forward(x3, mean, invstd, weight, bias).reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x3, mean, invstd, weight = ctx.saved_tensors
        g3 = g.reshape(x3.shape)
        c, m = x3.shape[1], ctx.count
        xhat = (x3 - mean[:, None]) * invstd[:, None]
        xp = array_module(g3)
        local = xp.concatenate([g3.sum(axis=(0, 2), dtype=np.float64), (g3 * xhat).sum(axis=(0, 2), dtype=np.float64)])
        gbias, gweight = local[:c].astype(g.dtype), local[c:2 * c].astype(g.dtype)  # this rank's own
        sums = dist.all_reduce(local)  # (sum g, sum g * xhat) over the global batch, in place
        scale = invstd if weight is None else weight * invstd
        mean_g, mean_gx = (sums[:c] / m).astype(g.dtype), (sums[c:2 * c] / m).astype(g.dtype)
        gx = (g3 - mean_g[:, None] - xhat * mean_gx[:, None]) * scale[:, None]
        return (gx.reshape(g.shape), gweight if ctx.needs_input_grad[1] else None,
                gbias if ctx.needs_input_grad[2] else None, None, None, None, None)


def _shifted_sums(x3):
    """Per channel of (N, C, L) x3, shifted by its mean c (in x3's dtype): (the count N * L, c,
    sum(x - c), sum((x - c)^2)), in float64, concatenated (3C + 1,). No rows: c = 0."""
    xp = array_module(x3)
    n = x3.shape[0] * x3.shape[2]
    shift = (x3.sum(axis=(0, 2), dtype=np.float64) / max(n, 1)).astype(x3.dtype)
    d = x3 - shift[:, None]
    return xp.concatenate([xp.full(1, n, dtype=np.float64), shift.astype(np.float64),
                           d.sum(axis=(0, 2), dtype=np.float64), (d * d).sum(axis=(0, 2), dtype=np.float64)])


class SyncBatchNorm(BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch (all ranks); in eval
    mode, or over one process, it is BatchNorm2d. Its parameters' gradients are each rank's own:
    wrap the model in DistributedDataParallel, which averages them."""

    def forward(self, x):
        running_mean, running_var, weight, bias, batch_stats, momentum, eps = self._arguments(x)
        if not batch_stats or dist.get_world_size() == 1:
            return F.batch_norm(x, running_mean, running_var, weight, bias, batch_stats, momentum, eps)
        running = (None, None) if running_mean is None else (running_mean.data, running_var.data)
        return SyncBatchNormFunction.apply(x, weight, bias, *running, momentum, eps)

    def fused(self, x, relu=True, residual=None):
        """relu(self(x) + residual) as BatchNorm2d.fused, but in separate ops (the global statistics
        come from this module's forward, which has no fused ReLU)."""
        y = self(x) if residual is None else self(x) + residual
        return y.relu() if relu else y


def convert_sync_batchnorm(module):
    """``module`` with every BatchNorm2d in it replaced by a SyncBatchNorm that holds the same
    parameters and buffers (the same Tensor objects, so an optimizer made before still works);
    a BatchNorm2d passed itself comes back converted."""
    if type(module) is BatchNorm2d:
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        sync._parameters.update(module._parameters)
        sync._buffers.update(module._buffers)
        return sync.train(module.training)
    for name, child in list(module.named_children()):
        module._modules[name] = convert_sync_batchnorm(child)
    return module
