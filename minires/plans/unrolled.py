"""A convolution on maps with fewer positions than its kernel has live taps (a 3x3 kernel on 2x2
maps) as one dense GEMM with the unrolled weight Wb (kernels/toeplitz.py), over the batch's columns:
    Y (P*Cout, N) = Wb (P*Cout, Q*C) @ X (Q*C, N),    X[(q, c), n] = x[n, c, q]
p over the Ho*Wo outputs, q over the H*W inputs. im2col + GEMM would also multiply the padding's
zeros: on 2x2 maps this does 4/9 of its multiply-adds. Backward: gX = Wb^T @ gY, gWb = gY @ X^T
folded back onto the taps. X and Y are x and y with their axes reordered (small: a few positions).
"""
from .. import kernels
from ..device import array_module
from .problem import ConvPlan


class UnrolledWeight(ConvPlan):
    name = "unrolled-weight gemm"

    def __init__(self, problem, needs, why=""):
        super().__init__(problem, needs, why)
        self.taps = kernels.toeplitz_taps(problem.x_shape[2:], *problem.geometry)  # T (P, Q)

    def forward(self, x, w, b):
        p, xp = self.problem, array_module(x)
        p_out, q_in = self.taps.shape
        wb = kernels.toeplitz_weight(w, self.taps)
        cols = xp.ascontiguousarray(x.reshape(p.n, p.c, q_in).transpose(2, 1, 0)).reshape(q_in * p.c, p.n)
        y = xp.ascontiguousarray((wb @ cols).reshape(p_out, p.cout, p.n).transpose(1, 2, 0))  # channel-major
        if b is not None:
            y += b[:, None, None]
        saved = (wb if self.needs[0] else None, cols if self.needs[1] else None)
        return y.reshape((p.cout, p.n) + p.out_hw).transpose(1, 0, 2, 3), saved

    def backward(self, saved, g):
        p, xp = self.problem, array_module(g)
        wb, cols = saved
        (n, c, h, w), p_out = p.x_shape, self.taps.shape[0]
        gy = xp.ascontiguousarray(g.reshape(n, p.cout, p_out).transpose(2, 1, 0)).reshape(p_out * p.cout, n)
        gx = gw = gb = None
        if self.needs[0]:  # (Q*C, N) -> channel-major (C, N, H, W)
            gx = xp.ascontiguousarray((wb.T @ gy).reshape(h * w, c, n).transpose(1, 2, 0))
            gx = gx.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        if self.needs[1]:
            gw = kernels.toeplitz_weight_grad(gy @ cols.T, self.taps, p.w_shape)
        if self.needs[2]:
            gb = gy.reshape(p_out, p.cout, n).sum(axis=(0, 2))
        return gx, gw, gb
