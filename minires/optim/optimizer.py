"""Optimizer: parameter groups and per-parameter state, as torch.optim.Optimizer.

``params`` is an iterable of Parameters or of dicts {"params": [...], <hyperparameter>: value}; each
group's hyperparameters default to the optimizer's. Updates work on the arrays directly (no graph).
"""
import numpy as np

from ..device import array_module


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            group = {**self.defaults, **g, "params": list(g["params"])}
            self.param_groups.append(group)
        seen = set()
        for p in self.params():
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
            seen.add(id(p))
        self.state = {}  # Parameter -> dict of arrays (e.g. a momentum buffer)

    def params(self):
        return (p for g in self.param_groups for p in g["params"])

    def zero_grad(self, set_to_none=True):
        for p in self.params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad.data, self.state.setdefault(p, {}), group)

    def update(self, p, grad, state, group):
        """Update p.data in place from its gradient array, its state dict and its group's settings."""
        raise NotImplementedError

    def state_dict(self):
        """{"state": {index: {name: array or number}}, "param_groups": [{..., "params": [indices]}]},
        parameters numbered in group order, as PyTorch."""
        index = {id(p): i for i, p in enumerate(self.params())}
        return {"state": {index[id(p)]: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()}
                          for p, s in self.state.items() if s},
                "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                  "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the parameter groups do not match this optimizer's")
        params = list(self.params())
        for own, g in zip(self.param_groups, groups):
            own.update({k: v for k, v in g.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            xp = array_module(p.data)
            self.state[p] = {k: xp.asarray(v, dtype=p.dtype) if isinstance(v, np.ndarray) or hasattr(v, "shape") else v
                             for k, v in s.items()}
