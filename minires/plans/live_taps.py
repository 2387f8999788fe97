"""Kernel taps that read only padding, for every output, dropped before another plan runs.

On small maps the outer taps of a kernel can miss the map for every output: a 3x3, padding-1
convolution of 1x1 maps reads only through its centre tap, so it is a 1x1 convolution (a plain
GEMM, 9x less arithmetic). This plan crops the weight to its live taps (kernels.taps_crop) and the
padding to match, and runs the plan chosen for that smaller problem; the weight's gradient is the
inner plan's, put back in place with zeros for the dropped taps (kernels.taps_pad, the adjoint).
"""
import dataclasses

from .. import kernels
from .problem import ConvPlan


class LiveTaps(ConvPlan):
    name = "live taps"

    def __init__(self, problem, needs, window, inner, why=""):
        super().__init__(problem, needs, why)
        self.window, self.inner = window, inner  # ((t0, t1), (u0, u1)), the plan of the cropped problem

    def forward(self, x, w, b):
        return self.inner.forward(x, kernels.taps_crop(w, *self.window), b)

    def backward(self, saved, g):
        gx, gw, gb = self.inner.backward(saved, g)
        origin = self.window[0][0], self.window[1][0]
        return gx, None if gw is None else kernels.taps_pad(gw, self.problem.w_shape, origin), gb

    def release(self, saved):
        self.inner.release(saved)

    def __repr__(self):
        (t0, t1), (u0, u1) = self.window
        return f"{self.name} [{t0}:{t1}, {u0}:{u1}] + {self.inner!r}"


def live_window(p):
    """((t0, t1), (u0, u1)): the rows and columns of the kernel that read inside the map for at least
    one output (all of them when every tap does)."""
    return tuple(_live(size, k, s, pad, d, o) for size, k, s, pad, d, o in
                 zip(p.x_shape[2:], p.ksize, p.stride, p.padding, p.dilation, p.out_hw))


def _live(size, k, s, pad, d, out):
    """[t0, t1): the taps t of a k-tap window whose offset t*d - pad lands inside [0, size) for some
    output o, at o*s + t*d - pad."""
    live = [t for t in range(k) if any(0 <= o * s + t * d - pad < size for o in range(out))]
    return (live[0], live[-1] + 1) if live else (0, k)


def cropped(p, window):
    """The problem with the kernel cropped to ``window`` and the padding reduced to match, or None
    where that would not keep the output's size or a non-negative padding (nothing to drop)."""
    (t0, t1), (u0, u1) = window
    if (t1 - t0, u1 - u0) == p.ksize:
        return None
    padding = (p.padding[0] - t0 * p.dilation[0], p.padding[1] - u0 * p.dilation[1])
    q = dataclasses.replace(p, w_shape=p.w_shape[:2] + (t1 - t0, u1 - u0), padding=padding)
    return q if min(padding) >= 0 and q.out_hw == p.out_hw else None
