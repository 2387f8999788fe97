"""Optimizer updates, in place on a parameter array and its state, as torch.optim computes them.

SGD with momentum in NumPy is five or six passes over every parameter (and temporaries for the
scaled terms); the Numba version is one parallel pass, reading p, grad and the momentum buffer
once and writing p and the buffer once. Its arithmetic is the reference's, in the parameter's
dtype and order, so the two agree exactly.
"""
import math

import numpy as np
from numba import njit, prange

from ._dispatch import kernel
from ..device import array_module

__all__ = ["sgd_update", "adamw_update"]


@kernel
def sgd_update(p, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step in place: d = grad + weight_decay * p; with momentum, buf = d on the first step,
    else buf = momentum * buf + (1 - dampening) * d, and d = d + momentum * buf (nesterov) or buf;
    then p -= lr * d. buf: the momentum buffer (updated in place), or None without momentum."""
    t = p.dtype.type
    d = grad + t(weight_decay) * p if weight_decay else grad
    if momentum:
        if first:
            buf[...] = d
        else:
            buf *= t(momentum)
            buf += t(1 - dampening) * d
        d = d + t(momentum) * buf if nesterov else buf
    p -= t(lr) * d


@sgd_update.register("numba")
def _sgd_update_numba(p, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    arrays = (p, grad) if buf is None else (p, grad, buf)
    if not all(a.flags.c_contiguous for a in arrays) or grad.dtype != p.dtype:
        return sgd_update.impls["numpy"](p, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first)
    t = p.dtype.type
    _sgd_loops(p.reshape(-1), grad.reshape(-1), (p if buf is None else buf).reshape(-1), t(lr), t(momentum),
               t(1 - dampening), t(weight_decay), nesterov, first)


@njit(cache=True, parallel=True)
def _sgd_loops(p, grad, buf, lr, momentum, keep, weight_decay, nesterov, first):
    """The reference's update, element by element (buf unused when momentum is 0; keep = 1 - dampening).
    Loops: elements in parallel, one contiguous block per thread. A flat prange, not chunks of
    range(k * chunk, ...): LLVM vectorizes this loop and kept that one scalar (see
    benchmarks/RESULTS.md)."""
    for i in prange(p.size):
        d = grad[i] + weight_decay * p[i] if weight_decay else grad[i]
        if momentum:
            b = d if first else buf[i] * momentum + keep * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@kernel
def adamw_update(p, grad, m, v, vmax, lr, beta1, beta2, eps, weight_decay, t):
    """One AdamW step in place (torch.optim.AdamW; step t counted from 1): p *= 1 - lr * weight_decay;
    m = beta1 m + (1 - beta1) grad; v = beta2 v + (1 - beta2) grad^2; with amsgrad (vmax an array,
    else None) vmax = max(vmax, v) stands for v below; p -= lr / (1 - beta1^t) * m / (sqrt(v) /
    sqrt(1 - beta2^t) + eps). m, v, vmax: the optimizer's state, updated in place."""
    xp = array_module(p)
    p *= 1 - lr * weight_decay
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
    p -= (lr / (1 - beta1 ** t)) * m / denom


@adamw_update.register("numba")
def _adamw_update_numba(p, grad, m, v, vmax, lr, beta1, beta2, eps, weight_decay, t):
    arrays = (p, grad, m, v) if vmax is None else (p, grad, m, v, vmax)
    if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in arrays):
        return adamw_update.impls["numpy"](p, grad, m, v, vmax, lr, beta1, beta2, eps, weight_decay, t)
    c = p.dtype.type
    _adamw_loops(p.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), (v if vmax is None else vmax).reshape(-1),
                 vmax is not None, c(1 - lr * weight_decay), c(beta1), c(1 - beta1), c(beta2), c(1 - beta2),
                 c(lr / (1 - beta1 ** t)), c(math.sqrt(1 - beta2 ** t)), c(eps))


@njit(cache=True, parallel=True)
def _adamw_loops(p, grad, m, v, vmax, amsgrad, decay, beta1, keep1, beta2, keep2, step, root2, eps):
    """The reference's update, element by element, in one pass (vmax unused without amsgrad).
    Loops: elements in parallel."""
    for i in prange(p.size):
        g = grad[i]
        mi = m[i] * beta1 + keep1 * g
        vi = v[i] * beta2 + keep2 * g * g
        m[i], v[i] = mi, vi
        if amsgrad:
            w = vmax[i]
            vi = w if w > vi or np.isnan(w) else vi
            vmax[i] = vi
        p[i] = p[i] * decay - step * mi / (np.sqrt(vi) / root2 + eps)
