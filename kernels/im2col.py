"""im2col / col2im: unfold the sliding windows of an NCHW image into GEMM-ready columns, and back.

Layout: col[n, (c, i, j), (y, x)] = xpad[n, c, y*sh + i*dh, x*sw + j*dw], shape (N, C*kh*kw, Ho*Wo),
so that conv2d is one batched GEMM  weight(Cout, C*kh*kw) @ col[n]  giving NCHW output directly.
"""
from ._dispatch import kernel
from ._geometry import conv_out_size, crop, out_hw, pad, tap_slices
from ._xp import array_module

__all__ = ["im2col", "col2im", "conv_out_size"]


@kernel
def im2col(x, ksize, stride, padding, dilation):
    """x (N, C, H, W) -> col (N, C*kh*kw, Ho*Wo), a new contiguous array. One strided copy per tap."""
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), ohw = ksize, out_hw((h, w), ksize, stride, padding, dilation)
    xpad = pad(xp, x, padding)
    col = xp.empty((n, c, kh, kw) + ohw, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = xpad[(..., *tap_slices(i, j, ohw, stride, dilation))]
    return col.reshape(n, c * kh * kw, ohw[0] * ohw[1])


@kernel
def col2im(col, x_shape, ksize, stride, padding, dilation):
    """The adjoint of im2col: col (N, C*kh*kw, Ho*Wo) -> (N, C, H, W), summing overlapping taps."""
    xp = array_module(col)
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = ksize, padding
    ohw = out_hw((h, w), ksize, stride, padding, dilation)
    col = col.reshape((n, c, kh, kw) + ohw)
    gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            gx[(..., *tap_slices(i, j, ohw, stride, dilation))] += col[:, :, i, j]
    return xp.ascontiguousarray(crop(gx, padding))
