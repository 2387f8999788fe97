"""minires.optim.lr_scheduler against torch.optim.lr_scheduler: the lr of every group at every
step, warmup by SequentialLR, state_dict round trips and argument checks."""
import numpy as np
import pytest

from minires.nn import Parameter
from minires.optim import SGD, lr_scheduler as ours

torch = pytest.importorskip("torch")
theirs = torch.optim.lr_scheduler

STEPS = 25


def _optimizers():
    """Ours and torch's SGD, each with two groups of different lrs."""
    mine = SGD([{"params": [Parameter(np.zeros(2))]}, {"params": [Parameter(np.zeros(2))], "lr": 0.5}], lr=0.1)
    ref = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                           {"params": [torch.zeros(2, requires_grad=True)], "lr": 0.5}], lr=0.1)
    return mine, ref


def _sequential(module, opt, **kw):
    """A linear warmup over 4 steps, then cosine annealing over the rest."""
    warmup = module.LinearLR(opt, start_factor=0.1, total_iters=4)
    return module.SequentialLR(opt, [warmup, module.CosineAnnealingLR(opt, T_max=STEPS - 4)], milestones=[4])


SCHEDULES = {
    "constant-factor": lambda m, opt: m.ConstantLR(opt, factor=0.5, total_iters=3),
    "constant-1": lambda m, opt: m.ConstantLR(opt, factor=1.0, total_iters=0),
    "linear": lambda m, opt: m.LinearLR(opt, start_factor=0.25, end_factor=0.75, total_iters=10),
    "step": lambda m, opt: m.StepLR(opt, step_size=7, gamma=0.5),
    "multistep": lambda m, opt: m.MultiStepLR(opt, milestones=[12, 5, 20], gamma=0.3),
    "cosine": lambda m, opt: m.CosineAnnealingLR(opt, T_max=10, eta_min=0.01),  # runs past T_max
    "warmup-cosine": _sequential,
    "warmup-step": lambda m, opt: m.SequentialLR(
        opt, [m.LinearLR(opt, start_factor=0.5, total_iters=2), m.StepLR(opt, step_size=3)], milestones=[2]),
}


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("name", SCHEDULES)
def test_matches_torch(name):
    mine, ref = _optimizers()
    sched, ref_sched = SCHEDULES[name](ours, mine), SCHEDULES[name](theirs, ref)
    for _ in range(STEPS):
        # torch's cosine updates recursively (lr from the previous lr), ours in closed form
        np.testing.assert_allclose(_lrs(mine), _lrs(ref), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12, atol=1e-15)
        ref.step()  # torch warns when the scheduler steps before the optimizer
        sched.step()
        ref_sched.step()


@pytest.mark.parametrize("name", ["warmup-cosine", "multistep"])
def test_state_dict_round_trip(name):
    mine, _ = _optimizers()
    sched = SCHEDULES[name](ours, mine)
    for _ in range(6):
        sched.step()
    state, opt_state = sched.state_dict(), mine.state_dict()
    expected = []
    for _ in range(8):
        sched.step()
        expected.append(_lrs(mine))

    fresh, _ = _optimizers()
    fresh.load_state_dict(opt_state)
    resumed = SCHEDULES[name](ours, fresh)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 6
    for lrs in expected:
        resumed.step()
        assert _lrs(fresh) == lrs


def test_state_dict_leaves_out_the_optimizer():
    mine, _ = _optimizers()
    state = _sequential(ours, mine).state_dict()
    assert "optimizer" not in state and all("optimizer" not in s for s in state["_schedulers"])
    assert state["base_lrs"] == [0.1, 0.5] and state["last_epoch"] == 0


@pytest.mark.parametrize("make, match", [
    (lambda opt: ours.StepLR(opt, step_size=0), "StepLR: step_size"),
    (lambda opt: ours.CosineAnnealingLR(opt, T_max=0), "CosineAnnealingLR: T_max"),
    (lambda opt: ours.LinearLR(opt, start_factor=0.0), "LinearLR"),
    (lambda opt: ours.LinearLR(opt, total_iters=0), "LinearLR"),
    (lambda opt: ours.ConstantLR(opt, factor=2.0), "ConstantLR"),
    (lambda opt: ours.SequentialLR(opt, [ours.StepLR(opt, 2), ours.StepLR(opt, 3)], milestones=[]), "SequentialLR"),
])
def test_bad_arguments(make, match):
    opt, _ = _optimizers()
    with pytest.raises(ValueError, match=match):
        make(opt)
