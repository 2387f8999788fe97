"""The Numba kernels against their NumPy references, the kernel switch, and the ops under both.

Exactly equal where the two do the same arithmetic in the same order (im2col, col2im, max-pool
forward with its argmax, average pooling, bn_forward); within float rounding where the order of a
sum differs (max-pool backward, the batch-norm reductions, which Numba accumulates in float64).
Inputs come in three memory layouts: NCHW-contiguous, channel-major (an (N, C, H, W) view of
(C, N, H, W) memory, as conv2d outputs are) and a sliced, non-contiguous view.
"""
import importlib
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import kernels
from minires.kernels import Kernel
from minires.kernels._geometry import pool_out_size, valid_range
from minires.kernels._layout import is_channel_major
from minires.kernels.pooling import avgpool_divisor

im2col_module = importlib.import_module("minires.kernels.im2col")  # the module, not the kernel it defines
LAYOUTS = ["nchw", "channel_major", "sliced"]
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def make(shape, layout, dtype, rng, values=None):
    """An array of the given shape and memory layout, N(0, 1) or drawn by ``values(shape)``."""
    draw = values or (lambda s: rng.standard_normal(s))
    if layout == "nchw":
        return draw(shape).astype(dtype)
    if layout == "channel_major":
        return np.ascontiguousarray(draw((shape[1], shape[0]) + shape[2:]).astype(dtype)).swapaxes(0, 1)
    big = draw(shape[:-1] + (2 * shape[-1] + 1,)).astype(dtype)
    return big[..., 1::2]  # every other column: strides no kernel layout has


def both(kernel, *args):
    """(numba result, numpy result) of one kernel on the same arguments."""
    return kernel.impls["numba"](*args), kernel.impls["numpy"](*args)


def assert_layout_kept(out, like):
    """Channel-major in -> channel-major out; anything else -> NCHW-contiguous out."""
    assert is_channel_major(out) == is_channel_major(like)
    assert out.flags.c_contiguous or out.swapaxes(0, 1).flags.c_contiguous


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- im2col / col2im

def test_valid_range_is_exactly_the_taps_inside():
    """The loops' bounds: lo..hi is every t in [0, count) with t*stride + offset in [0, size), none else."""
    for offset in range(-9, 6):
        for stride in (1, 2, 3):
            for size in (1, 2, 5):
                for count in (1, 2, 4):
                    lo, hi = valid_range(offset, stride, size, count)
                    inside = [t for t in range(count) if 0 <= t * stride + offset < size]
                    assert 0 <= lo <= hi <= count and list(range(lo, hi)) == inside, (offset, stride, size, count)


# (x shape, kernel, stride, padding, dilation)
CONV_CASES = [
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),     # the common 3x3 "same" convolution
    ((2, 3, 9, 8), (2, 2), (3, 3), (0, 0), (1, 1)),     # stride > kernel: skipped input
    ((1, 2, 5, 5), (3, 3), (1, 1), (2, 2), (1, 1)),     # padding > half the kernel, batch 1
    ((2, 2, 4, 4), (3, 2), (1, 2), (3, 2), (1, 1)),     # padding >= kernel: all-zero rows and columns
    ((2, 2, 9, 9), (3, 3), (2, 1), (1, 2), (2, 3)),     # dilation
    ((3, 4, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1)),     # 1x1 maps
    ((2, 3, 1, 1), (3, 3), (1, 1), (1, 1), (1, 1)),     # 1x1 map under a padded 3x3 kernel
    ((1, 2, 1, 1), (5, 5), (1, 1), (2, 2), (1, 1)),     # taps entirely in the padding for every output
    ((2, 4, 7, 7), (1, 1), (2, 2), (0, 0), (1, 1)),     # ResNet's downsampling 1x1 stride 2
    ((2, 3, 11, 10), (7, 7), (2, 2), (3, 3), (1, 1)),   # ResNet's stem
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("im2col_path", ["rows", "gather"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_equal_reference(case, layout, dtype, im2col_path, rng, monkeypatch):
    # both loop structures of the Numba im2col and col2im on every case (they pick one by the width)
    for name in ("GATHER_BELOW", "COL2IM_GATHER_BELOW"):
        monkeypatch.setattr(im2col_module, name, 0 if im2col_path == "rows" else 1 << 30)
    shape, *geometry = case
    x = make(shape, layout, dtype, rng)
    col, ref = both(kernels.im2col, x, *geometry)
    assert col.flags.c_contiguous and col.dtype == dtype
    np.testing.assert_array_equal(col, ref)

    gcol = rng.standard_normal(col.shape).astype(dtype)
    gx, ref = both(kernels.col2im, gcol, shape, *geometry)
    assert gx.shape == shape and gx.dtype == dtype
    assert gx.swapaxes(0, 1).flags.c_contiguous  # channel-major, as the reference
    np.testing.assert_array_equal(gx, ref)  # the same additions in the same order

    n = shape[0]
    for images in ((0, n), (n - 1, n), (0, max(n - 1, 1))):  # conv2d's chunks of images
        got, want = both(kernels.im2col, x, *geometry, None, images)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, kernels.im2col.impls["numpy"](x[images[0]:images[1]], *geometry))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_im2col_writes_into_out_and_checks_it(backend, rng):
    x = make((2, 3, 7, 6), "channel_major", np.float32, rng)
    geometry = (3, 3), (1, 1), (1, 1), (1, 1)
    im2col = kernels.im2col.impls[backend]
    out = np.full((27, 84), np.nan, np.float32)
    assert im2col(x, *geometry, out=out) is not None
    np.testing.assert_array_equal(out, im2col(x, *geometry))
    for bad in (np.empty((27, 85), np.float32), np.empty((27, 84)), np.empty((84, 27), np.float32).T):
        with pytest.raises(ValueError, match=r"im2col: out must be a C-contiguous float32 array of shape \(27, 84\)"):
            im2col(x, *geometry, out=bad)


def test_scratch_reuses_one_buffer_per_thread():
    kernels.release_scratch()
    a = kernels.scratch(np.empty(0), (4, 100), np.float32)
    b = kernels.scratch(np.empty(0), (10, 10), np.float64)  # smaller: the same memory
    assert b.flags.c_contiguous and b.shape == (10, 10) and b.dtype == np.float64
    assert np.shares_memory(a, b)
    c = kernels.scratch(np.empty(0), (1000,), np.float32)  # larger: a new buffer
    assert c.shape == (1000,) and not np.shares_memory(a, c)
    kernels.release_scratch()


def test_pool_gives_back_recycled_buffers_of_the_same_size():
    kernels.release_scratch()
    like = np.empty(0)
    a, b = kernels.pooled(like, (4, 100), np.float32), kernels.pooled(like, (4, 100), np.float32)
    assert a.flags.c_contiguous and a.shape == (4, 100) and not np.shares_memory(a, b)
    kernels.recycle(a)
    c = kernels.pooled(like, (100, 2), np.float64)  # the same bytes: a's buffer again
    assert c.shape == (100, 2) and c.dtype == np.float64 and np.shares_memory(a, c)
    kernels.recycle(b)
    d = kernels.pooled(like, (3,), np.float32)  # no buffer of its size: the pool is emptied
    kernels.recycle(c)
    e = kernels.pooled(like, (4, 100), np.float32)
    assert np.shares_memory(e, a) and not np.shares_memory(e, b)  # c's (a's) buffer came back; b's was dropped
    kernels.release_scratch()
    assert not np.shares_memory(kernels.pooled(like, (3,), np.float32), d)


def test_a_training_step_reuses_the_kept_col_of_the_previous_one():
    """conv2d keeps col for the weight gradient; backward gives it back, and the next step's forward
    takes the same memory; with retain_graph it stays with the graph until the last backward."""
    kernels.release_scratch()
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((2, 3, 8, 8)))
    w = minires.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    cols = []
    for retain in (False, False, True):
        y = F.conv2d(x, w, padding=1)
        cols.append(y._node.saved_tensors[0])
        y.sum().backward(retain_graph=retain)
    assert np.shares_memory(cols[0], cols[1]) and np.shares_memory(cols[1], cols[2])
    assert y._node.saved_tensors[0] is cols[2]  # retained: not given back
    kernels.release_scratch()


# ---------------------------------------------------------------- pooling

# (x shape, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [  # numba: narrower 3x3 windows without NaN by the written-out 3x3 path, the others a window at a time
    ((2, 3, 8, 8), (3, 3), (2, 2), (1, 1), (1, 1), False),   # ResNet's max pool
    ((2, 3, 9, 8), (2, 2), (3, 3), (0, 0), (1, 1), False),   # stride > kernel
    ((1, 2, 7, 6), (3, 2), (1, 2), (1, 1), (1, 1), True),    # padding = half the kernel, batch 1
    ((2, 2, 9, 9), (3, 3), (2, 2), (1, 1), (2, 2), True),    # dilation, ceil_mode's extra window
    ((2, 3, 10, 7), (3, 3), (3, 3), (1, 0), (1, 1), True),
    ((3, 4, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), False),   # 1x1 maps
    ((2, 2, 1, 1), (3, 3), (2, 2), (1, 1), (1, 1), True),    # 1x1 map, window mostly padding
    # rows of >= 36 outputs: the numba max pool's row-at-a-time path (strides 1, 2 and any other)
    ((2, 3, 20, 75), (3, 3), (2, 2), (1, 1), (1, 1), False),  # ResNet's max pool
    ((1, 2, 9, 40), (3, 2), (1, 1), (1, 0), (1, 1), True),
    ((1, 2, 8, 120), (2, 3), (1, 3), (0, 1), (1, 2), False),   # stride 3, dilation
]


def pool_geometry(case):
    shape, k, s, p, d, ceil = case
    return shape, (k, s, p, d), tuple(pool_out_size(*a, ceil) for a in zip(shape[2:], k, s, p, d))


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_equals_reference(case, layout, dtype, rng):
    shape, geometry, ohw = pool_geometry(case)
    x = make(shape, layout, dtype, rng)
    (y, arg), (y_ref, arg_ref) = both(kernels.maxpool_forward, x, *geometry, ohw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == np.int32
    assert_layout_kept(y, x)
    assert_layout_kept(arg, x)

    gy = make(y.shape, layout, dtype, rng)
    gx, ref = both(kernels.maxpool_backward, gy, arg, shape, *geometry)
    np.testing.assert_allclose(gx, ref, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert_layout_kept(gx, gy)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("width", [9, 80])  # 80: rows of 40 outputs, the numba row-at-a-time path
def test_maxpool_ties_nans_and_infs(layout, width, rng):
    """Ties keep the first tap, a NaN wins (the last one in its window), a window of -inf keeps tap 0
    even where that tap is padding, and backward then drops its gradient."""
    shape, geometry, ohw = pool_geometry(((2, 3, 9, width), (3, 3), (2, 2), (1, 1), (1, 1), True))
    x = make(shape, layout, np.float32, rng, values=lambda s: rng.integers(0, 3, s).astype(np.float32))
    x[0, 0, 0, :4] = np.nan           # windows with one NaN and with two
    x[0, 1, 4, 4] = np.nan
    x[1, 2] = -np.inf                 # a plane of -inf: every window is all -inf
    x[1, 1, 3:6, 3:6] = np.inf
    (y, arg), (y_ref, arg_ref) = both(kernels.maxpool_forward, x, *geometry, ohw)
    assert np.isnan(y).any() and (y == -np.inf).any()
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    gy = make(y.shape, layout, np.float32, rng)
    gx, ref = both(kernels.maxpool_backward, gy, arg, shape, *geometry)
    np.testing.assert_allclose(gx, ref, rtol=RTOL[np.float32], atol=RTOL[np.float32])


@pytest.mark.parametrize("case", [c for c in POOL_CASES if c[4] == (1, 1)], ids=str)  # no dilation
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("divisor", ["include_pad", "exclude_pad", "override"])
def test_avgpool_equals_reference(case, layout, dtype, divisor, rng):
    shape, (k, s, p, _), ohw = pool_geometry(case)
    div = (np.full(ohw, 3, dtype) if divisor == "override"
           else avgpool_divisor(np, shape[2:], ohw, k, s, p, divisor == "include_pad", dtype))
    x = make(shape, layout, dtype, rng)
    y, ref = both(kernels.avgpool_forward, x, k, s, p, ohw, div)
    np.testing.assert_array_equal(y, ref)  # the same sums in the same order
    assert_layout_kept(y, x)
    gy = make(y.shape, layout, dtype, rng)
    gx, ref = both(kernels.avgpool_backward, gy, shape, k, s, p, div)
    np.testing.assert_array_equal(gx, ref)
    assert_layout_kept(gx, gy)


# ---------------------------------------------------------------- batch norm

BN_SHAPES = [(4, 5, 30), (1, 3, 7), (8, 16, 49), (3, 2, 1)]


def bn_inputs(shape, layout, dtype, rng):
    x = make(shape, layout, dtype, rng) * 3 + 2
    mean, var = kernels.bn_stats.impls["numpy"](x)
    invstd = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))
    return x, mean, invstd, weight, bias


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_equals_reference(shape, layout, dtype, rng):
    x, mean, invstd, weight, bias = bn_inputs(shape, layout, dtype, rng)
    (m, v), (m_ref, v_ref) = both(kernels.bn_stats, x)
    assert m.dtype == v.dtype == dtype and m.shape == (shape[1],)
    np.testing.assert_allclose(m, m_ref, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(v, v_ref, rtol=4 * RTOL[dtype], atol=RTOL[dtype])

    for w, b in ((weight, bias), (None, None)):
        y, ref = both(kernels.bn_forward, x, mean, invstd, w, b)
        np.testing.assert_array_equal(y, ref)  # the reference's scale and shift, one multiply-add
        assert_layout_kept(y, x)

        gy = make(shape, layout, dtype, rng)
        for training in (True, False):
            got, ref = both(kernels.bn_backward, gy, x, mean, invstd, w, training)
            for a, r in zip(got, ref):
                assert a.dtype == dtype and a.shape == r.shape
                # gx's centred terms cancel: compare against the size of the terms, not of gx
                np.testing.assert_allclose(a, r, rtol=8 * RTOL[dtype], atol=8 * RTOL[dtype] * np.abs(r).max())
            assert_layout_kept(got[0], gy)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("residual_layout", [None] + LAYOUTS)
def test_bn_train_forward_is_bn_stats_then_bn_forward(shape, layout, dtype, relu, residual_layout, rng):
    """The fused kernel's numba version returns exactly what the numba bn_stats then bn_forward give
    (same float64 sums, same float32 invstd, scale and shift), with and without weight and bias and
    a residual (in any layout); the reference the same from the reference kernels; the two agree
    within rounding."""
    x, _, _, weight, bias = bn_inputs(shape, layout, dtype, rng)
    res = None if residual_layout is None else make(shape, residual_layout, dtype, rng)
    for w, b in ((weight, bias), (None, None)):
        results = {}
        for backend in ("numba", "numpy"):
            y, mean, var, invstd = kernels.bn_train_forward.impls[backend](x, w, b, 1e-5, relu, res)
            m, v = kernels.bn_stats.impls[backend](x)
            inv = 1 / np.sqrt(v + dtype(1e-5))
            np.testing.assert_array_equal(mean, m)
            np.testing.assert_array_equal(var, v)
            np.testing.assert_array_equal(invstd, inv)
            np.testing.assert_array_equal(y, kernels.bn_forward.impls[backend](x, m, inv, w, b, relu, res))
            assert y.dtype == mean.dtype == var.dtype == invstd.dtype == dtype
            assert_layout_kept(y, x)
            results[backend] = y, mean, var, invstd
        for a, r in zip(results["numba"], results["numpy"]):
            np.testing.assert_allclose(a, r, rtol=16 * RTOL[dtype], atol=16 * RTOL[dtype] * np.abs(r).max())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_fused_relu(layout, dtype, rng):
    """relu=True is relu(bn(x)) exactly, forward and backward, also for x whose bn(x) is within
    a few ulps of 0 (the backward recomputes the forward's mask) or NaN."""
    shape = (3, 4, 40)
    x, mean, invstd, weight, bias = bn_inputs(shape, layout, dtype, rng)
    scale = weight * invstd
    at_zero = (mean - bias / scale)[None, :, None]  # where x * scale + shift is 0
    x[..., :20] = at_zero + rng.integers(-3, 4, shape[:2] + (20,)) * np.spacing(np.abs(at_zero).astype(dtype))
    x[0, 0, 25] = np.nan
    ref = kernels.bn_forward.impls["numpy"]
    y = ref(x, mean, invstd, weight, bias)
    np.testing.assert_array_equal(ref(x, mean, invstd, weight, bias, relu=True), np.maximum(y, 0))
    got, want = both(kernels.bn_forward, x, mean, invstd, weight, bias, True)
    np.testing.assert_array_equal(got, want)
    assert_layout_kept(got, x)

    gy = make(shape, layout, dtype, rng)
    for training in (True, False):
        unfused = kernels.bn_backward.impls["numpy"](np.where(y > 0, gy, 0), x, mean, invstd, weight, training)
        want = kernels.bn_backward.impls["numpy"](gy, x, mean, invstd, weight, training, bias, True)
        got = kernels.bn_backward.impls["numba"](gy, x, mean, invstd, weight, training, bias, True)
        for a, u, w in zip(got, unfused, want):
            np.testing.assert_array_equal(w, u)
            tol = 8 * RTOL[dtype]
            np.testing.assert_allclose(a, w, rtol=tol, atol=tol * np.nanmax(np.abs(w)))
        if not training:
            np.testing.assert_array_equal(got[0], want[0])  # the mask exactly: zeros where y <= 0


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bn_forward_residual(shape, layout, dtype, rng):
    """residual: the numba kernel equals the reference exactly, and both equal bn(x) + residual, then
    the ReLU, as separate NumPy steps (NaN in the residual kept); the residual's layout may differ from x's."""
    x, mean, invstd, weight, bias = bn_inputs(shape, layout, dtype, rng)
    for r_layout in LAYOUTS:
        r = make(shape, r_layout, dtype, rng)
        r[0, 0, 0] = np.nan
        for relu in (False, True):
            got, want = both(kernels.bn_forward, x, mean, invstd, weight, bias, relu, r)
            y = kernels.bn_forward.impls["numpy"](x, mean, invstd, weight, bias) + r
            np.testing.assert_array_equal(want, np.maximum(y, 0) if relu else y)
            np.testing.assert_array_equal(got, want)
            assert_layout_kept(got, x)


def test_bn_stats_accumulates_in_float64(rng):
    """float32 input far from zero: Numba's float64 sums keep the variance to float32 rounding."""
    x = (1e4 + rng.standard_normal((8, 4, 500))).astype(np.float32)
    mean, var = kernels.bn_stats.impls["numba"](x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2)), rtol=1e-6)


# ---------------------------------------------------------------- add_relu, relu_backward

def special_values(rng):
    """N(0, 1) draws with exact zeros, signed zeros, infs and NaNs mixed in."""
    def draw(shape):
        v = np.asarray(rng.standard_normal(shape))
        v.flat[::7], v.flat[1::11], v.flat[2::13] = 0.0, -0.0, np.inf
        v.flat[3::17], v.flat[4::19] = -np.inf, np.nan
        return v
    return draw


ELEMENTWISE_CASES = [(shape, layouts) for shape in [(2, 3, 5, 7), (4, 3, 200, 300)] for layouts in [
    ("nchw", "nchw"), ("channel_major", "channel_major"), ("channel_major", "nchw"), ("sliced", "channel_major")]
] + [((4, 70000), ("nchw", "nchw")), ((9,), ("nchw", "nchw")), ((), ("nchw", "nchw"))]


@pytest.mark.parametrize("shape, layouts", ELEMENTWISE_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.filterwarnings("ignore:invalid value encountered")  # inf + -inf
def test_add_relu_and_relu_backward_equal_reference(shape, layouts, dtype, rng):
    """Exactly equal (several parallel chunks in the larger shapes), NaN kept by add_relu, and
    relu_backward 0 wherever the unit is off, even for an inf or NaN gradient (PyTorch's
    threshold_backward); the output in the first argument's layout."""
    a, b = (make(shape, layout, dtype, rng, special_values(rng)) for layout in layouts)
    for kernel in (kernels.add_relu, kernels.relu_backward):
        got, want = both(kernel, a, b)
        assert got.shape == want.shape == shape and got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
        if len(shape) == 4:
            assert_layout_kept(got, b if kernel is kernels.relu_backward else a)
    out = kernels.add_relu(a, b)
    assert np.isnan(out[np.isnan(a + b)]).all() and (out[~np.isnan(a + b)] >= 0).all()
    gx = kernels.relu_backward(a, b)
    assert (gx[~(b > 0)] == 0).all() and np.array_equal(gx[b > 0], a[b > 0], equal_nan=True)


# ---------------------------------------------------------------- sgd_update

@pytest.mark.parametrize("settings", [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=False),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False),
    dict(momentum=0.8, dampening=0.0, weight_decay=5e-4, nesterov=True),
], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_sgd_update_equals_reference(settings, dtype, contiguous, rng):
    """Three steps (the first sets the momentum buffer) over 100k values (several parallel chunks):
    parameters and buffers exactly equal; strided arrays take the reference path."""
    shape = (300, 334) if contiguous else (300, 668)
    p0 = rng.standard_normal(shape).astype(dtype)
    results = {}
    for backend in ("numba", "numpy"):
        p, buf = p0.copy(), np.empty_like(p0)
        view, bview = (p, buf) if contiguous else (p[:, ::2], buf[:, ::2])
        for step, seed in enumerate((1, 2, 3)):
            grad = np.random.default_rng(seed).standard_normal(view.shape).astype(dtype)
            kernels.sgd_update.impls[backend](view, grad, bview if settings["momentum"] else None, 0.1,
                                              first=step == 0, **settings)
        results[backend] = view, bview
    np.testing.assert_array_equal(results["numba"][0], results["numpy"][0])
    if settings["momentum"]:
        np.testing.assert_array_equal(results["numba"][1], results["numpy"][1])
    assert not np.array_equal(results["numba"][0], p0 if contiguous else p0[:, ::2])


# ---------------------------------------------------------------- taps_crop, taps_pad

@pytest.mark.parametrize("shape, rows, cols", [
    ((6, 5, 3, 3), (1, 2), (1, 2)),    # the centre tap (3x3 on 1x1 maps)
    ((6, 5, 3, 3), (1, 3), (1, 3)),    # a 2x2 corner (stride 2 from 2x2 maps)
    ((4, 3, 5, 5), (0, 3), (2, 4)),    # an off-centre window of a 5x5 kernel
    ((2, 7, 3, 3), (0, 3), (0, 3)),    # every tap live
    ((1, 1, 1, 1), (0, 1), (0, 1)),
], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_taps_crop_and_pad_equal_reference(shape, rows, cols, dtype, contiguous, rng):
    """Exactly equal (copies); the crop C-contiguous, the pad zero outside the window and the crop's
    adjoint: <crop(w), g> = <w, pad(g)>. Sliced inputs too."""
    w = rng.standard_normal(shape).astype(dtype) if contiguous else rng.standard_normal(shape + (2,)).astype(dtype)[..., 0]
    got, want = both(kernels.taps_crop, w, rows, cols)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, w[:, :, rows[0]:rows[1], cols[0]:cols[1]])
    assert got.flags.c_contiguous and got.dtype == dtype
    g = rng.standard_normal(got.shape).astype(dtype)
    g = g if contiguous else np.repeat(g, 2, axis=1)[:, ::2]
    got, want = both(kernels.taps_pad, g, shape, (rows[0], cols[0]))
    np.testing.assert_array_equal(got, want)
    outside = np.ones(shape, bool)
    outside[:, :, rows[0]:rows[1], cols[0]:cols[1]] = False
    assert got.shape == shape and got.flags.c_contiguous and not got[outside].any()
    np.testing.assert_allclose(np.vdot(kernels.taps_crop(w, rows, cols), g), np.vdot(w, got), rtol=RTOL[dtype])


# ---------------------------------------------------------------- toeplitz_weight, toeplitz_weight_grad

TOEPLITZ_CASES = [  # (x hw, weight shape, stride, padding, dilation)
    ((2, 2), (6, 5, 3, 3), (1, 1), (1, 1), (1, 1)),     # ResNet's 2x2 maps
    ((3, 2), (4, 3, 3, 3), (1, 1), (2, 2), (1, 2)),     # dilated, with blocks that read nothing
    ((3, 3), (3, 2, 5, 5), (2, 2), (2, 2), (1, 1)),
    ((1, 1), (2, 7, 3, 3), (1, 1), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("hw, shape, stride, padding, dilation", TOEPLITZ_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_toeplitz_weight_equals_reference_and_convolves(hw, shape, stride, padding, dilation, dtype, contiguous, rng):
    """Numba equal to the reference exactly, both ways (the gradient sums in one order); Wb @ X is the
    convolution (im2col + GEMM of the reference kernels); the gradient is the adjoint:
    <Wb(w), G> = <w, Wb^T(G)>. Sliced inputs too."""
    w = rng.standard_normal(shape).astype(dtype) if contiguous else rng.standard_normal(shape + (2,)).astype(dtype)[..., 1]
    taps = kernels.toeplitz_taps(hw, shape[2:], stride, padding, dilation)
    got, want = both(kernels.toeplitz_weight, w, taps)
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and got.shape == (taps.shape[0] * shape[0], taps.shape[1] * shape[1])
    n = 3
    x = rng.standard_normal((n, shape[1]) + hw).astype(dtype)
    cols = x.reshape(n, shape[1], -1).transpose(2, 1, 0).reshape(-1, n)
    y = (got @ cols).reshape(taps.shape[0], shape[0], n).transpose(2, 1, 0)
    col = kernels.im2col.impls["numpy"](x, shape[2:], stride, padding, dilation)
    direct = (w.reshape(shape[0], -1) @ col).reshape(shape[0], n, -1).transpose(1, 0, 2)
    np.testing.assert_allclose(y, direct, rtol=RTOL[dtype], atol=RTOL[dtype] * 10)
    g = rng.standard_normal(got.shape).astype(dtype)
    g = g if contiguous else np.repeat(g, 2, axis=0)[::2]
    gw, want = both(kernels.toeplitz_weight_grad, g, taps, shape)
    np.testing.assert_array_equal(gw, want)
    assert gw.shape == shape and gw.dtype == dtype
    np.testing.assert_allclose(np.vdot(got, g), np.vdot(w, gw), rtol=RTOL[dtype] * 10)


# ---------------------------------------------------------------- the switch

@pytest.fixture
def restore_kernels():
    before = minires.get_kernels()
    yield
    minires.set_kernels(before)


def test_set_kernels_switches_and_falls_back(restore_kernels):
    k = Kernel(lambda x: "numpy")
    k.register("numba")(lambda x: "numba")
    only_reference = Kernel(lambda x: "numpy")
    x = np.zeros(1)
    for name in ("numpy", "numba"):
        minires.set_kernels(name)
        assert minires.get_kernels() == name and k(x) == name
        assert only_reference(x) == "numpy"  # no numba version: the reference


def test_numba_is_the_default_and_every_kernel_has_one():
    assert minires.get_kernels() == os.environ.get("MINIRES_KERNELS", "numba")
    for name in kernels.__all__:
        if isinstance(getattr(kernels, name), Kernel):
            assert "numba" in getattr(kernels, name).impls, name


@pytest.mark.parametrize("name", ["cuda", "Numba", "", None])
def test_set_kernels_rejects_unknown_names(name, restore_kernels):
    with pytest.raises(ValueError, match="set_kernels"):
        minires.set_kernels(name)


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True)


def run_python_args(code, args, **env):
    """code with command-line args and the variables ``env``, in an environment without the OpenMP
    variable that importing minires in this process may have set (as a user's shell would be)."""
    env = dict({k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, **env)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)


GLIBC = sys.platform.startswith("linux") and hasattr(__import__("ctypes").CDLL(None), "gnu_get_libc_version")
FAULTS_CODE = """
import resource, numpy as np, minires
def fresh():  # twenty 8 MB arrays alive at once, then freed: a training step's activations
    arrays = [np.ones(1 << 21, np.float32) for _ in range(20)]
fresh()
fresh()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fresh()
print(minires.runtime.MALLOC_TUNED, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="the malloc setting applies to glibc only")
def test_malloc_tuning_reuses_freed_large_blocks():
    """With minires imported, freed 8 MB arrays are reused without page faults; MINIRES_MALLOC=default
    keeps glibc's own behaviour (fresh, faulting pages each time); other values are refused."""
    tuned, default = (run_python(FAULTS_CODE, **env) for env in ({}, {"MINIRES_MALLOC": "default"}))
    assert tuned.returncode == 0 and default.returncode == 0, tuned.stderr + default.stderr
    (flag_t, faults_t), (flag_d, faults_d) = (out.stdout.split() for out in (tuned, default))
    assert (flag_t, flag_d) == ("True", "False")
    assert int(faults_t) < 100 < int(faults_d), (faults_t, faults_d)  # 20 arrays of 2,048 pages
    out = run_python("import minires", MINIRES_MALLOC="jemalloc")
    assert out.returncode != 0 and "MINIRES_MALLOC" in out.stderr and "jemalloc" in out.stderr


SPIN = """if True:
    import sys, time
    for name in sys.argv[1].split(","):
        __import__(name)
    import os, numpy as np
    a = np.ones((512, 512), np.float32)
    a @ a
    t0 = time.process_time()
    time.sleep(0.2)
    print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), time.process_time() - t0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                    reason="OpenBLAS is found through /proc/self/maps (Linux), and spins with 2 threads or more")
@pytest.mark.parametrize("order", ["minires", "numpy,minires", "torch,minires"])
def test_openblas_threads_sleep_after_a_gemm_whatever_was_imported_first(order):
    """OpenBLAS's idle threads wait for the next GEMM by spinning unless OPENBLAS_THREAD_TIMEOUT is
    short when they start: minires sets it before NumPy loads OpenBLAS, or, after, has OpenBLAS read
    it again and restart its threads. Measured as the CPU time the process uses while its main
    thread sleeps after a GEMM on 2 threads; NumPy alone shows the spinning (the check can fail).
    With BLAS on its own threads (workqueue): on the shared pool (blas_pool.py) its threads never run."""
    threads = ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in threads}
    env.update(OPENBLAS_NUM_THREADS="2", NUMBA_THREADING_LAYER="workqueue")
    if order.startswith("torch"):
        pytest.importorskip("torch")
    run = lambda first: subprocess.run([sys.executable, "-c", SPIN, first], env=env, capture_output=True, text=True)
    out = run(order)
    timeout, cpu = out.stdout.split()
    assert timeout == "4" and float(cpu) < 0.03, (out.stdout, out.stderr)
    if order == "minires":
        assert float(run("numpy").stdout.split()[1]) > 0.05
    kept = run_python("import numpy, minires, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], "
                      "minires.runtime.OPENBLAS_TIMEOUT_SET)", OPENBLAS_THREAD_TIMEOUT="10")
    assert kept.stdout.split() == ["10", "False"], kept.stderr


def test_environment_variable_selects_kernels():
    code = "import minires; print(minires.get_kernels())"
    for name in ("numpy", "numba"):
        out = run_python(code, MINIRES_KERNELS=name)
        assert out.returncode == 0 and out.stdout.strip() == name, out.stderr
    out = run_python(code, MINIRES_KERNELS="fortran")
    assert out.returncode != 0 and "MINIRES_KERNELS" in out.stderr and "fortran" in out.stderr


def test_threading_layer_is_openmp_shared_with_blas_unless_chosen():
    """By default Numba runs on OpenMP and NumPy's OpenBLAS on the same threads, with OpenMP's wait
    policy left as it is; NUMBA_THREADING_LAYER given by the user is kept, and then BLAS keeps its
    own threads and OpenMP (were it loaded) is made passive, unless the user chose a policy too."""
    code = """if True:
        import os, numba, numpy as np, minires
        minires.kernels.bn_stats(np.ones((2, 3, 4), np.float32))
        print(numba.threading_layer(), minires.runtime.BLAS_ON_OPENMP, os.environ.get("OMP_WAIT_POLICY"))
    """
    out = run_python_args(code, [])
    if minires.blas_pool.has_callback(minires.runtime.openblas()) and sys.platform.startswith("linux"):
        assert out.stdout.split() == ["omp", "True", "None"], out.stderr
    else:  # no threads callback, or no libgomp: BLAS's own threads, OpenMP passive where it loads
        assert out.stdout.split()[1:] == ["False", "PASSIVE"], out.stderr
    out = run_python_args(code, [], NUMBA_THREADING_LAYER="workqueue")
    assert out.stdout.split() == ["workqueue", "False", "PASSIVE"], out.stderr
    assert run_python(code, NUMBA_THREADING_LAYER="workqueue", OMP_WAIT_POLICY="ACTIVE").stdout.split() == [
        "workqueue", "False", "ACTIVE"]


def test_threads_callback_needs_openblas_0_3_29():
    """0.3.28 introduced the callback, and could run a job without its buffer: not used there."""
    lib = lambda version, setter=True: types.SimpleNamespace(  # noqa: E731
        config=lambda: b"OpenBLAS " + version + b" DYNAMIC_ARCH USE64BITINT", **(
            {"scipy_openblas_set_threads_callback_function64_": print} if setter else {}))  # any function
    has = minires.blas_pool.has_callback
    assert has(lib(b"0.3.29")) and has(lib(b"0.3.31.dev")) and has(lib(b"0.4.0"))
    assert not has(lib(b"0.3.28")) and not has(lib(b"0.3.31", setter=False))


BUSY = """if True:
    import os, sys
    for name in sys.argv[1].split(","):
        __import__(name)
    import numpy as np, minires
    if "torch" in sys.modules:  # PyTorch's OpenMP threads have run (a notebook that used it first)
        sys.modules["torch"].ones(256, 256) @ sys.modules["torch"].ones(256, 256)
    def ticks():  # CPU time of each thread of this process, in clock ticks
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[11]) + int(fields[12])
        return out
    a, x = np.ones((1024, 1024), np.float32), np.ones((16, 64, 1 << 16), np.float32)
    a @ a, minires.kernels.bn_stats(x)
    before = ticks()
    for _ in range(20):
        a @ a, minires.kernels.bn_stats(x)
    after = ticks()
    print(minires.runtime.BLAS_ON_OPENMP, sum(after[t] - before.get(t, 0) >= 3 for t in after))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                    reason="threads are counted through /proc (Linux), and run in parallel with 2 CPUs or more")
@pytest.mark.parametrize("order", ["minires", "numpy,minires", "torch,minires", "minires,torch"])
def test_blas_and_kernels_share_one_pool_whatever_was_imported_first(order):
    """GEMMs and Numba kernels alternating on 2 threads keep exactly 2 threads busy, whatever was
    imported first: the GEMMs' jobs run on the kernels' OpenMP threads, in PyTorch's GNU OpenMP when
    PyTorch loaded it first. On workqueue, BLAS keeps its own threads: more busy (the check can fail)."""
    if "torch" in order:
        pytest.importorskip("torch")
    if not minires.blas_pool.has_callback(minires.runtime.openblas()):
        pytest.skip("this NumPy's OpenBLAS takes no threads callback")
    counts = dict.fromkeys(("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"), "2")
    run = lambda **more: run_python_args(BUSY, [order], **counts, **more)  # noqa: E731
    out = run()
    assert out.stdout.split() == ["True", "2"], (out.stdout, out.stderr)
    if order == "minires":
        out = run(NUMBA_THREADING_LAYER="workqueue")
        assert out.stdout.split()[0] == "False" and int(out.stdout.split()[1]) > 2, (out.stdout, out.stderr)


GEMMS = """if True:
    import os, sys, threading, numpy as np, minires
    rng = np.random.default_rng(0)
    def case(dtype, m, k, n):  # operands, and their product in extended precision
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        return a, b, a.astype(np.longdouble) @ b.astype(np.longdouble)
    def check(a, b, exact):  # a GEMM split into jobs
        err = np.abs(a @ b - exact).max()
        assert err <= 10 * np.finfo(a.dtype).eps * a.shape[1] * np.abs(exact).max(), (a.dtype, a.shape, b.shape)
    cases = [case(np.float32, 512, 300, 700), case(np.float64, 700, 512, 300), case(np.float32, 64, 4096, 96),
             case(np.float64, 2000, 8, 2000)]
    for c in cases:
        check(*c)
    # four Python threads at once: their GEMMs overlap (each team's thread 1 would share a buffer)
    errors = []
    def work():
        try:
            [check(*c) for c in cases * 10]
        except AssertionError as e:
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    pid = os.fork()  # the child has no OpenMP threads: its GEMMs run on OpenBLAS's own again
    if pid == 0:
        check(*case(np.float32, 512, 512, 512))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(minires.runtime.BLAS_ON_OPENMP, status)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, and OpenBLAS found through /proc")
def test_gemms_on_the_shared_pool_are_right_from_threads_and_after_fork():
    """GEMMs whose jobs run on OpenMP's threads: right in float32 and float64 over shapes split
    across threads, from four Python threads at once, and in a forked child (not hanging on the
    parent's OpenMP threads, which the child does not have)."""
    out = subprocess.run([sys.executable, "-c", GEMMS], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="2"))
    assert out.returncode == 0 and out.stdout.split()[1] == "0", (out.stdout, out.stderr)
    assert out.stdout.split()[0] == str(minires.blas_pool.has_callback(minires.runtime.openblas())), out.stdout


def test_kernels_from_several_threads():
    """Numba's workqueue threading layer aborts on concurrent entry; the dispatch lock prevents it."""
    code = """if True:
        import threading, numpy as np, minires
        from minires import kernels
        x = np.random.default_rng(0).standard_normal((2, 8, 64)).astype(np.float32)
        def work():
            for _ in range(200):
                kernels.bn_stats(x)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("ok")
    """
    out = run_python(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------- the ops under both

def run_ops(name, seed=0):
    """Forward and backward of conv2d > batch_norm > max_pool2d > avg_pool2d under kernels ``name``:
    the output and every gradient, as arrays."""
    minires.set_kernels(name)
    rng = np.random.default_rng(seed)
    t = lambda *shape: minires.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)  # noqa: E731
    x, w, b = t(2, 3, 11, 10), t(6, 3, 3, 3), t(4)
    gamma, beta = t(6), t(6)
    rm, rv = minires.tensor(np.zeros(6, np.float32)), minires.tensor(np.ones(6, np.float32))
    h = F.conv2d(x, w, stride=1, padding=2, dilation=2)  # no bias: batch norm would cancel its gradient
    h = F.batch_norm(h, rm, rv, gamma, beta, training=True)
    h = F.max_pool2d(h, 3, stride=2, padding=1, ceil_mode=True)
    h = F.avg_pool2d(h, 2, stride=1, padding=1, count_include_pad=False)
    h = F.conv2d(h, t(4, 6, 1, 1), b, stride=2)
    g = minires.tensor(rng.standard_normal(h.shape).astype(np.float32))
    (h * g).sum().backward()
    return [h.numpy(), rm.numpy(), rv.numpy()] + [p.grad.numpy() for p in (x, w, b, gamma, beta)]


def test_ops_agree_under_numpy_and_numba(restore_kernels):
    for got, ref in zip(run_ops("numba"), run_ops("numpy")):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adamw", "amsgrad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_update_numba_equals_reference(amsgrad, dtype):
    """Three AdamW steps in one Numba pass per step against the reference's NumPy passes: the same
    operations in the same order, equal to rounding (LLVM may fuse a multiply-add)."""
    rng = np.random.default_rng(0)
    runs, first = [], rng.standard_normal(1000).astype(dtype)
    for impl in ("numpy", "numba"):
        p = first.copy()
        start = p.copy()
        state = [np.zeros_like(p) for _ in range(3 if amsgrad else 2)]
        grads = np.random.default_rng(1).standard_normal((3, 1000)).astype(dtype)
        for t in range(1, 4):
            kernels.adamw_update.impls[impl](p, grads[t - 1], *state, *([] if amsgrad else [None]),
                                             1e-2, 0.9, 0.999, 1e-8, 0.05, t)
        runs.append((start, p, state))
    (_, p_ref, s_ref), (_, p_nb, s_nb) = runs
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for a, b in zip([p_nb, *s_nb], [p_ref, *s_ref]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
