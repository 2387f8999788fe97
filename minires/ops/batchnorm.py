"""Batch normalization over the channel axis 1 of an (N, C, *) input, as PyTorch's F.batch_norm.

training: y = (x - mean_B) / sqrt(var_B + eps) * weight + bias with the batch's mean and biased
variance; running_mean/var are updated in place with the unbiased variance:
    running = (1 - momentum) * running + momentum * batch_stat.
eval: the running statistics stand in for the batch's, and are constants for backward.
One graph node with a closed-form backward (kernels.bn_backward), not a graph of elementwise ops;
in training one kernel computes the statistics and normalizes (kernels.bn_train_forward).
batch_norm is PyTorch's; fused_batch_norm (used by minires.fusion) also computes in the same pass
the ReLU that follows most batch norms, relu(batch_norm(x)), its backward recomputing the ReLU's
mask from x; and a residual added before it, a residual block's output relu(bn(x) + identity),
whose backward masks g by the saved output once, for the residual and the batch norm alike.
"""
import math

from .. import kernels
from ..device import array_module
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from .checks import same_dtype, tensor_arg


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, relu, residual):
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        r3 = None if residual is None else residual.reshape(x3.shape)
        if training:  # the batch's statistics, and y, in one kernel
            y, mean, var, invstd = kernels.bn_train_forward(x3, weight, bias, eps, relu, r3)
            if running_mean is not None:
                m = x3.shape[0] * x3.shape[2]
                running_mean *= 1 - momentum
                running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
                running_var *= 1 - momentum
                running_var += (momentum * m / (m - 1)) * var.astype(running_var.dtype, copy=False)
        else:
            mean, var = running_mean.astype(x.dtype, copy=False), running_var.astype(x.dtype, copy=False)
            invstd = 1 / array_module(x).sqrt(var + x.dtype.type(eps))
            y = kernels.bn_forward(x3, mean, invstd, weight, bias, relu, r3)
        # with a residual the ReLU's mask needs the output (the batch norm's alone does not give it)
        mask = y if relu and residual is not None else None
        ctx.save_for_backward(x3, mean, invstd, weight, bias, mask)
        ctx.training, ctx.relu, ctx.residual = training, relu, residual is not None
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x3, mean, invstd, weight, bias, mask = ctx.saved_tensors
        g3 = g.reshape(x3.shape)
        if mask is not None:  # the residual's gradient too
            g3 = kernels.relu_backward(g3, mask)
        gx, gw, gb = kernels.bn_backward(g3, x3, mean, invstd, weight, ctx.training, bias, ctx.relu and not ctx.residual)
        # One array for x and the residual is safe: run_backward sums gradients out of place
        gr = g3.reshape(g.shape) if ctx.residual and ctx.needs_input_grad[RESIDUAL] else None
        return (gx.reshape(g.shape), gw if ctx.needs_input_grad[1] else None,
                gb if ctx.needs_input_grad[2] else None, None, None, None, None, None, None, gr)


RESIDUAL = 9  # BatchNorm.forward's argument index of the residual


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's F.batch_norm. running_mean/running_var: Tensors of shape (C,) or None."""
    return fused_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def fused_batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                     eps=1e-5, relu=False, residual=None):
    """batch_norm, then (optionally) + residual and ReLU, in the same pass: relu=True returns
    relu(batch_norm(...)), saving no more than batch_norm does; residual (a Tensor of input's shape
    and dtype) is added before the ReLU: relu(batch_norm(...) + residual), a residual block's output."""
    op = "batch_norm"
    x = tensor_arg(op, "input", input)
    if residual is not None:
        residual = tensor_arg(op, "residual", residual)
        if residual.shape != x.shape:
            raise ValueError(f"{op}: residual must have the input's shape {x.shape}, got {residual.shape}")
        same_dtype(op, input=x, residual=residual)
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
    return BatchNorm.apply(x, weight, bias, *running, bool(training), momentum, eps, bool(relu), residual)
