"""What a convolution plan is given: the problem (shapes and geometry), and the plan's contract."""
import math
from dataclasses import dataclass

import numpy as np

from ..kernels import conv_out_size


@dataclass(frozen=True)
class ConvProblem:
    """One convolution: input x (N, C, H, W) and weight w (Cout, C/groups, kh, kw) of one dtype on
    one device, with PyTorch's stride, padding, dilation and groups (pairs are (h, w))."""
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    dtype: np.dtype
    device: str

    n = property(lambda self: self.x_shape[0])
    c = property(lambda self: self.x_shape[1])
    cout = property(lambda self: self.w_shape[0])
    ksize = property(lambda self: tuple(self.w_shape[2:]))
    geometry = property(lambda self: (self.ksize, self.stride, self.padding, self.dilation))

    @property
    def out_hw(self):
        """(Ho, Wo): Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1, and so for Wo."""
        return tuple(conv_out_size(*a) for a in zip(self.x_shape[2:], self.ksize, self.stride, self.padding, self.dilation))

    @property
    def col_bytes(self):
        """Bytes of im2col's col for the batch: (C*kh*kw, N*Ho*Wo) elements of dtype."""
        return self.c * math.prod(self.ksize) * self.n * math.prod(self.out_hw) * self.dtype.itemsize

    @property
    def macs(self):
        """Multiply-adds of the forward: N Ho Wo * Cout * C/groups * kh * kw."""
        return self.n * math.prod(self.out_hw) * math.prod(self.w_shape)


class ConvPlan:
    """One algorithm for one ConvProblem, forward beside backward, over arrays:
        forward(x, w, b)     -> (y, saved)       y (N, Cout, Ho, Wo); b may be None
        backward(saved, gy)  -> (gx, gw, gb)     each None where ``needs`` says it is not wanted
        release(saved)       after the backward: memory the plan lent out goes back
    ``needs`` = (x, w, b): which gradients the backward must give. ``why``: the rule that chose it."""
    name = "plan"

    def __init__(self, problem, needs, why=""):
        self.problem, self.needs, self.why = problem, tuple(needs), why

    def release(self, saved):
        pass

    def __repr__(self):
        return f"{self.name} ({self.why})" if self.why else self.name
