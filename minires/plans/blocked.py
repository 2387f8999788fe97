"""Im2colGemm with its memory reused: the same arithmetic, without fresh memory for col each step.

A large new array is fresh pages from the OS, page-faulted and zeroed on first touch; these buffers
come back step after step instead (kernels/_scratch.py):
- with the weight's gradient needed (training), col is made for the whole batch into a pooled
  buffer, kept for the backward, and given back by release() for the next step's forward;
- otherwise col lives only until its GEMM has read it: the batch goes through in blocks of images
  whose col fits in THRESHOLDS["im2col_block_bytes"], in one scratch buffer, so that col stays in
  the CPU's cache from im2col to the GEMM; each block's GEMM writes its slice of y.
The backward's gcol lives in scratch memory too.
"""
from .. import kernels
from ..device import array_module
from .im2col_gemm import Im2colGemm, add_bias, grouped
from .thresholds import THRESHOLDS


class BlockedIm2colGemm(Im2colGemm):
    name = "im2col+gemm (blocked)"

    def forward(self, x, w, b):
        p, xp = self.problem, array_module(x)
        memory = kernels.pooled if self.needs[1] else kernels.scratch
        y = xp.empty((p.cout, p.n) + p.out_hw, x.dtype)  # channel-major
        for n0, n1 in self.blocks():
            col = memory(x, (p.c * p.ksize[0] * p.ksize[1], (n1 - n0) * p.out_hw[0] * p.out_hw[1]), x.dtype)
            kernels.im2col(x, *p.geometry, out=col, images=(n0, n1))
            xp.matmul(grouped(w, p.groups), grouped(col, p.groups), out=grouped(y[:, n0:n1], p.groups))
        add_bias(y, b)
        return y.transpose(1, 0, 2, 3), (col if self.needs[1] else None, w if self.needs[0] else None)

    def blocks(self):
        """The image ranges [n0, n1) of the forward: the whole batch when col is kept, else blocks of
        at most THRESHOLDS["im2col_block_bytes"] of col (one image at least)."""
        p = self.problem
        if self.needs[1]:
            return [(0, p.n)]
        step = max(1, THRESHOLDS["im2col_block_bytes"] // (p.col_bytes // p.n))
        return [(n0, min(n0 + step, p.n)) for n0 in range(0, p.n, step)]

    def gcol_memory(self, like, shape):
        return kernels.scratch(like, shape, like.dtype)

    def release(self, saved):
        if saved[0] is not None:
            kernels.recycle(saved[0])
