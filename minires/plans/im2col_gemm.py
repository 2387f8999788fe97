"""The reference plan: a convolution as im2col and one matrix product per group. Read this first.

x (N, C, H, W), w (Cout, C/G, kh, kw), b (Cout,) -> y (N, Cout, Ho, Wo), G groups:
    col = im2col(x)                 (C*kh*kw, N*Ho*Wo): column (n, y, x) holds the window that output reads
    y[g] = w[g] @ col[g]            (Cout/G, C/G*kh*kw) @ (C/G*kh*kw, N*Ho*Wo)   for each group g
    y += b
Backward, from gy[g] (Cout/G, N*Ho*Wo), the chain rule through the matrix product:
    gw[g] = gy[g] @ col[g]^T        gcol[g] = w[g]^T @ gy[g]        gx = col2im(gcol)
    gb = gy summed over N*Ho*Wo
col2im is im2col's adjoint: it adds each column's entries back to the input positions they came from.
The GEMM writes y channel-major, (Cout, N*Ho*Wo) in memory, returned as an (N, Cout, Ho, Wo) view of
it: no transpose copy, and the next op (batch norm, ReLU, the next convolution) takes it as it is.
col is kept for the weight's gradient rather than made again from x: kh*kw times x's memory.
"""
from .. import kernels
from ..device import array_module
from .problem import ConvPlan


class Im2colGemm(ConvPlan):
    name = "im2col+gemm"

    def forward(self, x, w, b):
        p, xp = self.problem, array_module(x)
        col = kernels.im2col(x, *p.geometry)
        y = xp.empty((p.cout, p.n) + p.out_hw, x.dtype)  # channel-major
        xp.matmul(grouped(w, p.groups), grouped(col, p.groups), out=grouped(y, p.groups))
        add_bias(y, b)
        return y.transpose(1, 0, 2, 3), (col if self.needs[1] else None, w if self.needs[0] else None)

    def backward(self, saved, g):
        p, xp = self.problem, array_module(g)
        col, w = saved
        gy = grouped(channel_major(g), p.groups)
        gx = None
        if self.needs[0]:
            wt = grouped(w, p.groups).swapaxes(1, 2)
            gcol = xp.matmul(wt, gy, out=self.gcol_memory(g, (p.groups, wt.shape[1], gy.shape[2])))
            gx = kernels.col2im(gcol.reshape(-1, gy.shape[2]), p.x_shape, *p.geometry)
        return gx, weight_grad(gy, col, p) if self.needs[1] else None, bias_grad(gy, p) if self.needs[2] else None

    def gcol_memory(self, like, shape):
        """Where gcol goes: a new array (None lets matmul make it)."""
        return None


def grouped(a, groups):
    """(Cout, ...) -> its (groups, Cout/groups, rest) view: one GEMM operand per group."""
    return a.reshape(groups, a.shape[0] // groups, -1)


def channel_major(a):
    """(N, C, H, W) -> (C, N*H*W): a view when a is channel-major in memory, else a copy."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def add_bias(y, b):
    """y (Cout, N, Ho, Wo) += b (Cout,), in place; nothing when b is None."""
    if b is not None:
        y += b[:, None, None, None]


def weight_grad(gy, col, p):
    """gw[g] = gy[g] @ col[g]^T, into an array of its own (so a leaf's .grad can take it uncopied)."""
    xp = array_module(gy)
    gw = xp.empty(p.w_shape, gy.dtype)
    xp.matmul(gy, grouped(col, p.groups).swapaxes(1, 2), out=grouped(gw, p.groups))
    return gw


def bias_grad(gy, p):
    """gb: gy (G, Cout/G, N*Ho*Wo) summed over the positions."""
    return gy.sum(axis=2).reshape(p.cout)
