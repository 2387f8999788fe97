"""A 1x1, stride-1, unpadded convolution: one GEMM per group on x itself, no im2col.

Its col would be x with the channels first: x_cm = x as (C, N*H*W), a view when x is channel-major
in memory (as a convolution's output is), so
    y[g] = w[g] @ x_cm[g]       gx_cm[g] = w[g]^T @ gy[g]       gw[g] = gy[g] @ x_cm[g]^T
with w as (Cout, C/G). Keeps x (not a copy) for the weight's gradient.
"""
from ..device import array_module
from .im2col_gemm import add_bias, bias_grad, channel_major, grouped, weight_grad
from .problem import ConvPlan


class Pointwise(ConvPlan):
    name = "pointwise gemm"

    def forward(self, x, w, b):
        p, xp = self.problem, array_module(x)
        y = xp.empty((p.cout, p.n) + p.out_hw, x.dtype)  # channel-major
        xp.matmul(grouped(w, p.groups), grouped(channel_major(x), p.groups), out=grouped(y, p.groups))
        add_bias(y, b)
        return y.transpose(1, 0, 2, 3), (x if self.needs[1] else None, w if self.needs[0] else None)

    def backward(self, saved, g):
        p, xp = self.problem, array_module(g)
        x, w = saved
        gy = grouped(channel_major(g), p.groups)
        gx = None
        if self.needs[0]:  # (C, N*H*W) -> the (N, C, H, W) view of it
            gx_cm = xp.matmul(grouped(w, p.groups).swapaxes(1, 2), gy).reshape(p.c, p.n, -1)
            gx = gx_cm.transpose(1, 0, 2).reshape(p.x_shape)
        gw = weight_grad(gy, channel_major(x), p) if self.needs[1] else None
        return gx, gw, bias_grad(gy, p) if self.needs[2] else None
