"""Implicit GEMM: im2col + GEMM's forward without the column matrix, on a GPU (kernels/cuda/conv_implicit.cu).

im2col + GEMM keeps col, (C*kh*kw, N*Ho*Wo): kh*kw times x's memory, from each convolution's forward
to its backward for the weight's gradient; over a network, those cols are much of a training step's
memory. This plan's kernel gathers the slices of col it multiplies into shared memory as it goes,
so the forward makes no col and keeps x instead (which the network keeps anyway). The backward is
im2col + GEMM's, with col made again from x when the weight's gradient needs it, and freed at once.
One more im2col per step buys not holding col between the passes: the rule is a memory rule
(THRESHOLDS["implicit_gemm_col_bytes"]), not a speed one.
"""
from .. import kernels
from .im2col_gemm import Im2colGemm, add_bias
from .thresholds import THRESHOLDS


class ImplicitGemm(Im2colGemm):
    name = "implicit gemm"

    def forward(self, x, w, b):
        from ..cuda.kernels import conv_implicit  # imported here: minires.cuda imports the plans
        p = self.problem
        y = conv_implicit(x, w, p.stride, p.padding, p.dilation, p.groups)  # channel-major
        add_bias(y, b)
        return y.transpose(1, 0, 2, 3), (x if self.needs[1] else None, w if self.needs[0] else None)

    def backward(self, saved, g):
        x, w = saved
        col = kernels.im2col(x, *self.problem.geometry) if self.needs[1] else None
        return super().backward((col, w), g)


def col_is_large(p, needs):
    """im2col's col for the whole batch would pass THRESHOLDS["implicit_gemm_col_bytes"]."""
    return p.col_bytes > THRESHOLDS["implicit_gemm_col_bytes"]
