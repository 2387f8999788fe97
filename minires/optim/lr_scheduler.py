"""Learning-rate schedules, as torch.optim.lr_scheduler, in closed form: each schedule is a function
lr(base_lr, t) of the step count t = 0, 1, 2, ..., and step() sets every parameter group's lr to
lr(initial_lr, t + 1). Construction applies t = 0. Whether t counts epochs or batches is up to the
caller (minires train steps once per batch).

    ConstantLR         base * factor for t < total_iters, then base
    LinearLR           base * (start + (end - start) * min(t, total_iters) / total_iters)
    StepLR             base * gamma^(t // step_size)
    MultiStepLR        base * gamma^(number of milestones <= t)
    CosineAnnealingLR  eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2
    SequentialLR       schedulers[i] from milestones[i-1] on, its t counted from there (warmup, then decay)
"""
import bisect
import math


class LRScheduler:
    def __init__(self, optimizer):
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])  # kept in the optimizer's state_dict
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, base_lr, t):
        """The learning rate at step t for a group whose initial lr is base_lr."""
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self._last_lr = [self.lr_at(base, self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        """Every attribute but the optimizer (whose lrs its own state_dict holds), as PyTorch."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


def _check(name, ok, message):
    if not ok:
        raise ValueError(f"{name}: {message}")


class ConstantLR(LRScheduler):
    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5):
        _check("ConstantLR", 0 <= factor <= 1 and total_iters >= 0,
               f"needs 0 <= factor <= 1 and total_iters >= 0, got factor={factor}, total_iters={total_iters}")
        self.factor, self.total_iters = factor, total_iters
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        return base_lr * self.factor if t < self.total_iters else base_lr


class LinearLR(LRScheduler):
    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        _check("LinearLR", 0 < start_factor <= 1 and 0 <= end_factor <= 1 and total_iters >= 1,
               f"needs 0 < start_factor <= 1, 0 <= end_factor <= 1 and total_iters >= 1, got "
               f"start_factor={start_factor}, end_factor={end_factor}, total_iters={total_iters}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        s, e = self.start_factor, self.end_factor
        return base_lr * (s + (e - s) * min(self.total_iters, t) / self.total_iters)


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size, gamma=0.1):
        _check("StepLR", step_size >= 1, f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class CosineAnnealingLR(LRScheduler):
    def __init__(self, optimizer, T_max, eta_min=0.0):
        _check("CosineAnnealingLR", T_max >= 1, f"T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class SequentialLR(LRScheduler):
    def __init__(self, optimizer, schedulers, milestones):
        _check("SequentialLR", len(milestones) == len(schedulers) - 1 and list(milestones) == sorted(milestones),
               f"needs one milestone fewer than schedulers ({len(schedulers)}), in increasing order, got {milestones}")
        _check("SequentialLR", all(s.optimizer is optimizer for s in schedulers),
               "every scheduler must belong to the optimizer given")
        self._schedulers, self._milestones = list(schedulers), list(milestones)
        super().__init__(optimizer)

    def lr_at(self, base_lr, t):
        i = bisect.bisect_right(self._milestones, t)
        return self._schedulers[i].lr_at(base_lr, t - (self._milestones[i - 1] if i else 0))

    def state_dict(self):
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        for s, sd in zip(self._schedulers, state.pop("_schedulers")):
            s.load_state_dict(sd)
        super().load_state_dict(state)
