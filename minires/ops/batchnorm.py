"""Batch normalization over the channel axis 1 of an (N, C, *) input, as PyTorch's F.batch_norm.

training: y = (x - mean_B) / sqrt(var_B + eps) * weight + bias with the batch's mean and biased
variance; running_mean/var are updated in place with the unbiased variance:
    running = (1 - momentum) * running + momentum * batch_stat.
eval: the running statistics stand in for the batch's, and are constants for backward.
One graph node with a closed-form backward (kernels.bn_backward), not a graph of elementwise ops;
in training one kernel computes the statistics and normalizes (kernels.bn_train_forward).
relu=True (a minires extension) fuses the ReLU that follows most batch norms into the same node:
relu(batch_norm(x)) in one pass, its backward recomputing the ReLU's mask from x.
"""
import math

from .. import kernels
from ..backend import array_module
from ..function import Function
from ..tensor import Tensor
from .checks import same_dtype, tensor_arg


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, relu):
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        if training:  # the batch's statistics, and y, in one kernel
            y, mean, var, invstd = kernels.bn_train_forward(x3, weight, bias, eps, relu)
            if running_mean is not None:
                m = x3.shape[0] * x3.shape[2]
                running_mean *= 1 - momentum
                running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
                running_var *= 1 - momentum
                running_var += (momentum * m / (m - 1)) * var.astype(running_var.dtype, copy=False)
        else:
            mean, var = running_mean.astype(x.dtype, copy=False), running_var.astype(x.dtype, copy=False)
            invstd = 1 / array_module(x).sqrt(var + x.dtype.type(eps))
            y = kernels.bn_forward(x3, mean, invstd, weight, bias, relu)
        ctx.save_for_backward(x3, mean, invstd, weight, bias)
        ctx.training, ctx.relu = training, relu
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x3, mean, invstd, weight, bias = ctx.saved_tensors
        gx, gw, gb = kernels.bn_backward(g.reshape(x3.shape), x3, mean, invstd, weight, ctx.training, bias, ctx.relu)
        return (gx.reshape(g.shape), gw if ctx.needs_input_grad[1] else None,
                gb if ctx.needs_input_grad[2] else None, None, None, None, None, None, None)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               relu=False):
    """PyTorch's F.batch_norm. running_mean/running_var: Tensors of shape (C,) or None.
    relu=True returns relu(batch_norm(...)) as one op, one pass each way, saving no more than
    batch_norm does (a minires extension)."""
    op = "batch_norm"
    x = tensor_arg(op, "input", input)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have shape (N, C, *), got {x.shape}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != (c,)):
            raise ValueError(f"{op}: {name} must be a Tensor of shape ({c},) for input of shape {x.shape}, "
                             f"got {getattr(t, 'shape', type(t).__name__)}")
    same_dtype(op, input=x, weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both be None")
    if eps <= 0:
        raise ValueError(f"{op}: eps must be positive, got {eps}")
    if training and x.shape[0] * math.prod(x.shape[2:]) < 2:
        raise ValueError(f"{op}: training needs more than one value per channel, got input of shape {x.shape}")
    if not training and running_mean is None:
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    running = (None, None) if running_mean is None else (running_mean.data, running_var.data)
    return BatchNorm.apply(x, weight, bias, *running, bool(training), momentum, eps, bool(relu))
