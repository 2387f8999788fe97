"""Convolution plans: each a whole algorithm for one convolution problem, forward beside backward.

Reading order: im2col_gemm.py (the reference plan, the idea in full), problem.py (what a plan is
given and returns), choose.py (the one place that picks a plan for a problem, and its rules).
The others are faster alternatives registered beside the reference: blocked.py (the same with reused
memory), pointwise.py (1x1), winograd.py (3x3), unrolled.py (maps smaller than the kernel),
live_taps.py (taps that read only padding dropped first), implicit_gemm.py (a GPU's: no col). A device registers its own plans with
register(device, Rule(...)); see minires/device.py.
"""
from .blocked import BlockedIm2colGemm
from .choose import Rule, choose, recording, register, rules
from .im2col_gemm import Im2colGemm
from .implicit_gemm import ImplicitGemm, col_is_large
from .live_taps import LiveTaps
from .pointwise import Pointwise
from .problem import ConvPlan, ConvProblem
from .thresholds import THRESHOLDS
from .unrolled import UnrolledWeight
from .winograd import Winograd

__all__ = ["ConvProblem", "ConvPlan", "Rule", "choose", "register", "rules", "recording", "THRESHOLDS",
           "Im2colGemm", "BlockedIm2colGemm", "ImplicitGemm", "col_is_large", "Pointwise", "Winograd", "UnrolledWeight", "LiveTaps"]
