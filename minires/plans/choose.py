"""choose(): the one place that decides which plan runs a convolution, and why.

Each device has a list of rules, tried in order; the first whose condition holds makes the plan.
A device without rules (one just registered) runs the reference plan, Im2colGemm, on its array
module. set_plans("reference") (minires.runtime) makes every convolution the reference plan. The
numbers the rules compare with are one table, thresholds.py. A choice is remembered per problem,
so a training step pays for it once.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .. import kernels, runtime
from .blocked import BlockedIm2colGemm
from .im2col_gemm import Im2colGemm
from .live_taps import LiveTaps, cropped, live_window
from .pointwise import Pointwise
from .thresholds import THRESHOLDS
from .unrolled import UnrolledWeight
from .winograd import Winograd


@dataclass(frozen=True)
class Rule:
    """make(problem, needs, why) -> a plan, where when(problem, needs) holds. backends: the CPU kernel
    backends the plan needs (None: any); why: the rule in words, shown by minires.explain."""
    make: Callable
    when: Callable
    why: str
    backends: Optional[tuple] = None


_rules = {}       # device name -> [Rule]
_recorders = []   # lists that collect every plan chosen (minires.explain)
_chosen = {}      # (problem, needs, settings) -> plan


def register(device, rule, index=None):
    """Add ``rule`` to ``device``'s rules, at the end or at ``index``."""
    rules = _rules.setdefault(device, [])
    rules.insert(len(rules) if index is None else index, rule)
    _chosen.clear()


def rules(device):
    """The rules of ``device``, in the order choose() tries them."""
    return list(_rules.get(device, []))


def choose(problem, needs):
    """The plan for ``problem``, with its ``why``. needs = (x, w, b): the gradients a backward wants."""
    plan = _remembered(problem, tuple(needs))
    for seen in _recorders:
        seen.append(plan)
    return plan


def _remembered(problem, needs):
    key = (problem, needs, runtime.get_plans(), runtime.get_kernels(), runtime.get_winograd(),
           tuple(THRESHOLDS.values()))
    plan = _chosen.get(key)
    if plan is None:
        if len(_chosen) >= 4096:  # many shapes (a sweep, gradchecks): start again rather than grow
            _chosen.clear()
        plan = _chosen[key] = _choose(problem, needs)
    return plan


def _choose(problem, needs):
    if runtime.get_plans() == "reference":
        return Im2colGemm(problem, needs, "the reference plan, forced by set_plans('reference')")
    backend = runtime.get_kernels() if problem.device == "cpu" else problem.device
    for rule in _rules.get(problem.device, []):
        if (rule.backends is None or backend in rule.backends) and rule.when(problem, needs):
            return rule.make(problem, needs, rule.why)
    return Im2colGemm(problem, needs, f"no other plan registered for device {problem.device!r}")


@contextlib.contextmanager
def recording():
    """Collect every plan chosen inside the block into the list it yields."""
    seen = []
    _recorders.append(seen)
    try:
        yield seen
    finally:
        _recorders.remove(seen)


# --- the CPU's rules -----------------------------------------------------------------------------
def _few_positions(p, needs):
    """Fewer map positions than live kernel taps, one group: the dense GEMM does fewer multiply-adds."""
    (t0, t1), (u0, u1) = live_window(p)
    return p.groups == 1 and p.x_shape[2] * p.x_shape[3] < (t1 - t0) * (u1 - u0)


def _dead_taps(p, needs):
    return cropped(p, live_window(p)) is not None


def _live_taps(p, needs, why):
    window = live_window(p)
    inner = _remembered(cropped(p, window), needs)
    return LiveTaps(p, needs, window, inner, f"{why}; then {inner.why}")


def _pointwise(p, needs):
    return p.ksize == (1, 1) and p.stride == (1, 1) and p.padding == (0, 0)


def _winograd_pays(p, needs):
    """3x3, stride 1, no dilation, one group, padding <= 2 (so that the input's gradient is one too),
    float32/64, and enough tiles: THRESHOLDS' (least output side, least tile slots, least slots x C,
    least fill: of the 4x4 tiles' outputs, the fraction inside the map), for inference or training;
    in training, with its GEMMs one batched BLAS call where there is one (kernels/gemm.py), else one
    call per matrix, which needs more work to pay."""
    if not (runtime.get_winograd() and p.ksize == (3, 3) and p.stride == (1, 1) and p.dilation == (1, 1)
            and p.groups == 1 and max(p.padding) <= 2 and p.dtype in (np.float32, np.float64)):
        return False
    key = "winograd_inference"
    if any(needs[:2]):
        key = "winograd_training" if kernels.gemm.available(p.dtype) else "winograd_training_per_matrix"
    min_hw, min_slots, min_work, min_fill = THRESHOLDS[key]
    tiles = kernels.winograd_slots(p.out_hw)  # per image, 16 outputs each
    return (min(p.out_hw) >= min_hw and p.n * tiles >= min_slots and p.n * tiles * p.c >= min_work
            and p.out_hw[0] * p.out_hw[1] >= min_fill * 16 * tiles)


for _rule in (
        Rule(UnrolledWeight, _few_positions, "fewer map positions than live kernel taps: one GEMM with the "
             "unrolled weight skips the padding's multiply-adds"),
        Rule(_live_taps, _dead_taps, "kernel taps that read only padding are dropped"),
        Rule(Pointwise, _pointwise, "1x1, stride 1, no padding: x is its own col"),
        Rule(Winograd, _winograd_pays, "3x3, stride 1, with enough output tiles for Winograd's "
             "transforms to pay (thresholds.py)", backends=("numba",)),
        Rule(BlockedIm2colGemm, lambda p, needs: True, "im2col + GEMM, col in reused memory"),
):
    register("cpu", _rule)
