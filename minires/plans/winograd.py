"""A stride-1 3x3 convolution by Winograd F(4x4, 3x3): 4x fewer multiply-adds than im2col + GEMM, for
linear transforms of the input and output tiles (kernels/winograd.py has the math).

    forward:  y = winograd_conv3x3(x, w)            keeps V, the transformed input, for the weight's gradient
    gx:       a 3x3 convolution of gy with the flipped, transposed weight, padding 2 - p: Winograd again
    gw:       winograd_weight_grad(gy, V)
V is 2.25x x's memory (im2col's col is 9x), in a pooled buffer given back by release().
float32 results are within about 1e-6 relative of im2col's (the transforms' constants round).
"""
from .. import kernels
from ..device import array_module
from .im2col_gemm import add_bias, bias_grad, channel_major, grouped
from .problem import ConvPlan


class Winograd(ConvPlan):
    name = "winograd F(4x4,3x3)"

    def forward(self, x, w, b):
        p, xp = self.problem, array_module(x)
        v = None
        if self.needs[1]:
            v = kernels.pooled(x, (6, 6, p.c, p.n * kernels.winograd_slots(p.out_hw)), x.dtype)
        y = kernels.winograd_conv3x3(x, w, p.padding, out=xp.empty((p.cout, p.n) + p.out_hw, x.dtype), v=v)
        add_bias(y, b)
        return y.transpose(1, 0, 2, 3), (v, w if self.needs[0] else None)

    def backward(self, saved, g):
        p, xp = self.problem, array_module(g)
        v, w = saved
        gx = None
        if self.needs[0]:
            flipped, padding = w[:, :, ::-1, ::-1], tuple(2 - q for q in p.padding)  # its swap is gx's weight
            gx = kernels.winograd_conv3x3(g, flipped, padding, out=xp.empty((p.c, p.n) + p.x_shape[2:], g.dtype),
                                          swapped=True)
            gx = gx.transpose(1, 0, 2, 3)
        gw = kernels.winograd_weight_grad(g, v) if self.needs[1] else None
        return gx, gw, bias_grad(grouped(channel_major(g), 1), p) if self.needs[2] else None

    def release(self, saved):
        if saved[0] is not None:
            kernels.recycle(saved[0])
