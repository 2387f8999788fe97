"""Stochastic gradient descent with momentum, as torch.optim.SGD:
    d = grad + weight_decay * p
    buf = d (first step), else momentum * buf + (1 - dampening) * d
    d = d + momentum * buf (nesterov) or buf
    p = p - lr * d
"""
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
        d = grad + group["weight_decay"] * p.data if group["weight_decay"] else grad
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * d
            d = d + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * d
