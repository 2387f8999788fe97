"""Adam with decoupled weight decay, as torch.optim.AdamW (step t counts from 1; kernels.adamw_update):
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * grad,   v = beta2 * v + (1 - beta2) * grad^2
    v_hat = max(v_hat, v) (amsgrad) or v
    p = p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
"""
from .. import kernels
from ..device import array_module
from .optimizer import Optimizer


class AdamW(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"AdamW: lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"AdamW: betas must be two numbers in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def update(self, p, grad, state, group):
        xp = array_module(p.data)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] = int(state["step"]) + 1  # int(): a loaded state may hold it as an array
        kernels.adamw_update(p.data, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                             group["lr"], *group["betas"], group["eps"], group["weight_decay"], state["step"])
