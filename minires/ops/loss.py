"""log_softmax and cross-entropy (fused log-softmax + negative log-likelihood, one graph node).

log_softmax(x)_c = x_c - max(x) - log sum_k exp(x_k - max(x));  backward: g - softmax * sum(g).
cross_entropy, per sample i with target t:  l_i = -(1 - s) w_t logp_t - (s / C) sum_c w_c logp_c
(s the label smoothing, w the class weights); its gradient by the logits is
(a_i + sum_c b_c) softmax_i - a_i onehot(t) - b with a_i = (1 - s) w_t, b = s w / C.
"""
import numpy as np

from ..device import array_module
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from .checks import same_dtype, tensor_arg


def _log_softmax(xp, x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        out = _log_softmax(array_module(x), x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        out, = ctx.saved_tensors
        return g - xp.exp(out) * g.sum(axis=ctx.axis, keepdims=True), None


def log_softmax(input, dim=-1):
    x = tensor_arg("log_softmax", "input", input)
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise ValueError(f"log_softmax: dim {dim} is out of range for input of shape {x.shape}")
    return LogSoftmax.apply(x, dim)


class CrossEntropy(Function):
    """Logits (M, C) (the class axis moved last and the rest flattened), targets (M,)."""

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction, smoothing):
        xp = array_module(logits)
        m, c = logits.shape
        logp = _log_softmax(xp, logits, 1)
        valid = target != ignore_index
        safe_t = xp.where(valid, target, 0)
        w = xp.ones(c, logits.dtype) if weight is None else weight
        a = xp.where(valid, (1 - smoothing) * w[safe_t], 0).astype(logits.dtype)  # weight of the target term
        b = (smoothing / c) * w  # weight of each class in the smoothing term
        loss = -a * logp[xp.arange(m), safe_t]
        if smoothing:
            loss -= xp.where(valid, logp @ b, 0)
        denom = xp.where(valid, w[safe_t], 0).sum() if reduction == "mean" else None
        ctx.save_for_backward(logp, safe_t, valid, a, b, denom)
        ctx.reduction = reduction
        if reduction == "none":
            return loss
        return loss.sum() / denom if reduction == "mean" else loss.sum()

    @staticmethod
    def backward(ctx, g):
        xp = array_module(g)
        logp, t, valid, a, b, denom = ctx.saved_tensors
        m = logp.shape[0]
        coef = a + xp.where(valid, b.sum(), 0).astype(a.dtype)
        grad = xp.exp(logp) * coef[:, None]
        grad[xp.arange(m), t] -= a
        if b.any():
            grad -= valid[:, None] * b[None, :]
        scale = g[:, None] if ctx.reduction == "none" else (g / denom if ctx.reduction == "mean" else g)
        return grad * scale, None, None, None, None, None


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's F.cross_entropy with class-index targets. input (N, C) or (N, C, d1, ...), or (C,)
    with a 0-d target; target integer class indices; reduction "mean" (weighted by the targets'
    class weights, ignored targets excluded), "sum" or "none"."""
    op = "cross_entropy"
    x = tensor_arg(op, "input", input)
    t = target.data if isinstance(target, Tensor) else target
    xp = array_module(x.data)
    t = xp.asarray(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a scalar")
    expected = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != expected:
        raise ValueError(f"{op}: target of shape {t.shape} does not match input of shape {x.shape} "
                         f"(expected target shape {expected})")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    c = x.shape[1] if x.ndim > 1 else x.shape[0]
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        raise ValueError(f"{op}: target {int(t[bad].ravel()[0])} is out of range for {c} classes (input shape {x.shape})")
    w = None
    if weight is not None:
        w = tensor_arg(op, "weight", weight, 1)
        if w.shape != (c,):
            raise ValueError(f"{op}: weight must have shape ({c},), got {w.shape}")
        same_dtype(op, input=x, weight=w)
        w = w.data
    # Move the class axis last and flatten the rest: logits (M, C), targets (M,).
    logits = x if x.ndim == 1 else x.transpose((0,) + tuple(range(2, x.ndim)) + (1,)) if x.ndim > 2 else x
    logits = logits.reshape(-1, c)
    loss = CrossEntropy.apply(logits, t.reshape(-1).astype(np.int64, copy=False), w, ignore_index, reduction, float(label_smoothing))
    return loss.reshape(expected) if reduction == "none" else loss
