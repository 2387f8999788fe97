"""SyncBatchNorm: batch normalization with the statistics of the global batch, every rank's
samples together, for when each rank's share is too small for good statistics (large models, a few
images per GPU).

Forward: each rank sums, per channel, x and x^2 over its own samples; one all_reduce of
(sum x, sum x^2, count) gives the global mean = S/M and biased variance = Q/M - mean^2 (M values per
channel over all ranks), the sums accumulated in float64 so that the subtraction loses nothing a
float32 result would show unless |mean| / std exceeds about 1e4. Backward: with xhat the normalized
input, scale = weight * invstd and g the output's gradient,
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
        sums = dist.all_reduce(_sums(x3, x3))  # (sum x, sum x^2, count) over the global batch, in one
        m = float(sums[2 * c])
        mean = sums[:c] / m
        var = array_module(x).maximum(sums[c:2 * c] / m - mean * mean, 0)
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
        local = _sums(g3, xhat)
        gbias, gweight = local[:c].astype(g.dtype), local[c:2 * c].astype(g.dtype)  # this rank's own
        sums = dist.all_reduce(local)  # (sum g, sum g * xhat) over the global batch, in place
        scale = invstd if weight is None else weight * invstd
        mean_g, mean_gx = (sums[:c] / m).astype(g.dtype), (sums[c:2 * c] / m).astype(g.dtype)
        gx = (g3 - mean_g[:, None] - xhat * mean_gx[:, None]) * scale[:, None]
        return (gx.reshape(g.shape), gweight if ctx.needs_input_grad[1] else None,
                gbias if ctx.needs_input_grad[2] else None, None, None, None, None)


def _sums(a, b):
    """Per channel of (N, C, L) arrays, in float64: (sum a, sum a * b, the count N * L), concatenated (2C + 1,)."""
    xp = array_module(a)
    count = xp.full(1, a.shape[0] * a.shape[2], dtype=np.float64)
    return xp.concatenate([a.sum(axis=(0, 2), dtype=np.float64), (a * b).sum(axis=(0, 2), dtype=np.float64), count])


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
