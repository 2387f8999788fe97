"""Stochastic gradient descent with momentum, as torch.optim.SGD:
    d = grad + weight_decay * p
    buf = d (first step), else momentum * buf + (1 - dampening) * d
    d = d + momentum * buf (nesterov) or buf
    p = p - lr * d
Each step is one pass over each parameter (kernels.sgd_update).
"""
from .. import kernels
from ..device import array_module
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def update(self, p, grad, state, group):
        momentum = group["momentum"]
        buf = state.get("momentum_buffer")
        first = momentum and buf is None
        if first:
            buf = state["momentum_buffer"] = array_module(p.data).empty_like(p.data)
        kernels.sgd_update(p.data, grad, buf, group["lr"], momentum, group["dampening"], group["weight_decay"],
                           group["nesterov"], first)
