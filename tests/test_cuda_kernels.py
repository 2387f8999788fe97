"""Every CUDA kernel (kernels/cuda/*.cu) run on the CPU through the shim (tests/cuda_cpu) under
AddressSanitizer, against its NumPy reference, over the op cases: strides, padding, dilation,
groups, odd and prime sizes, both memory layouts and non-contiguous inputs (which the caller makes
contiguous, as the GPU path will), float32 and float64, and launches whose grid is too small for
one thread per element (so the grid-stride loops go round).

Comparisons: bit-exact where the kernel does the reference's arithmetic in the reference's order
(im2col, col2im as a gather, pooling, ReLU); else (batch norm, optimizers: sums in another order,
and the GPU fuses multiply-adds) max |got - ref| <= rtol * max |ref| per array, rtol 1e-6 in
float32 and 1e-12 in float64. Output arrays start as NaN, so an element a kernel never writes fails.

The small functions named like the kernels (im2col, col2im, ...) are the callers a GPU path needs:
they make the layout contiguous, compute the geometry and the launch, and pass scalars in the
kernel's C types.
"""
import math
import types
import zlib

import numpy as np
import pytest
from cuda_cpu.worker import Worker

import minires.functional as F
from minires import kernels, plans
from minires.kernels._geometry import out_hw, pool_out_size
from minires.kernels._layout import canonical, from_planes, is_channel_major, to_planes
from minires.kernels.pooling import avgpool_divisor
from minires.optim.adamw import AdamW
from op_cases import CASES, minires_inputs

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-6, np.float64: 1e-12}
# (block, blocks wanted): "full" gives every element its own thread, "few" makes the loops stride
LAUNCHES = {"full": (64, None), "few": (32, 2)}
i32 = np.int32


@pytest.fixture(scope="module")
def device():
    worker = Worker()
    yield worker
    worker.close()


def reference(name):
    """The NumPy reference of kernel ``name`` (kernels/*.py)."""
    return getattr(kernels, name).impls["numpy"]


def grid(count, launch):
    block, blocks = LAUNCHES[launch]
    return blocks or math.ceil(count / block), block


def rng_for(*key):
    """A generator seeded by the key, the same in every run (str hashes are not)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def layouts(x, layout):
    """x (N, C, ...) in the named memory layout: NCHW, channel-major, or non-contiguous (a strided view)."""
    if layout == "nchw":
        return x
    if layout == "channel-major":
        return np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def assert_close(got, ref, dtype):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    scale = max(np.abs(np.nan_to_num(ref)).max(initial=0), np.finfo(dtype).tiny)
    err = np.abs(np.nan_to_num(got) - np.nan_to_num(ref)).max(initial=0) / scale
    assert err <= RTOL[dtype], f"relative error {err:.3g} > {RTOL[dtype]}"


def strides_nc(cm, n, c, plane):
    """(sn, sc): the element strides between images and channels of a canonical (N, C, plane) array."""
    return (plane, n * plane) if cm else (c * plane, plane)


# ---------------------------------------------------------------- im2col / col2im

CONV = {  # name: (x shape, ksize, stride, padding, dilation)
    "3x3": ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    "1x1": ((3, 2, 5, 5), (1, 1), (1, 1), (0, 0), (1, 1)),
    "stem-7x7-s2": ((2, 3, 11, 11), (7, 7), (2, 2), (3, 3), (1, 1)),
    "prime-mixed": ((1, 5, 11, 13), (3, 5), (2, 3), (2, 1), (1, 2)),
    "dilated": ((2, 2, 9, 7), (3, 3), (1, 1), (2, 2), (2, 3)),
    "stride-3-pad-2": ((1, 3, 13, 5), (2, 3), (3, 2), (0, 2), (3, 1)),
    "kernel-as-image": ((2, 3, 3, 3), (3, 3), (1, 1), (0, 0), (1, 1)),
}


def im2col(run, x, ksize, stride, padding, dilation, launch):
    n, c, h, w = x.shape
    cm = is_channel_major(x)
    ho, wo = out_hw((h, w), ksize, stride, padding, dilation)
    col = np.full((c * ksize[0] * ksize[1], n * ho * wo), np.nan, x.dtype)
    blocks, block = grid(col.shape[1], launch)
    run((blocks, min(col.shape[0], 3) if launch == "few" else col.shape[0]), (block,),
        (canonical(x, cm), col, *i32((n, c, h, w)), *strides_nc(cm, n, c, h * w),
         *i32((*ksize, *stride, *padding, *dilation, ho, wo))))
    return col


def col2im(run, col, x_shape, ksize, stride, padding, dilation, launch):
    """gx (N, C, H, W) in channel-major memory, as the reference returns it."""
    n, c, h, w = x_shape
    ho, wo = out_hw((h, w), ksize, stride, padding, dilation)
    gx = np.full((c, n, h, w), np.nan, col.dtype)
    blocks, block = grid(h * w, launch)
    run((blocks, 3 if launch == "few" else n * c), (block,),
        (col, gx, *i32((n, c, h, w)), *strides_nc(True, n, c, h * w),
         *i32((*ksize, *stride, *padding, *dilation, ho, wo))))
    return gx.transpose(1, 0, 2, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("case", CONV)
def test_im2col(device, case, layout, dtype):
    shape, *geometry = CONV[case]
    x = layouts(rng_for(case).standard_normal(shape).astype(dtype), layout)
    run = device.load("im2col").kernel("im2col", dtype)
    ref = reference("im2col")(x, *geometry)
    for launch in LAUNCHES:
        np.testing.assert_array_equal(im2col(run, x, *geometry, launch), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV)
def test_col2im(device, case, dtype):
    shape, *geometry = CONV[case]
    ho, wo = out_hw(shape[2:], *geometry)
    col = rng_for(case, "col").standard_normal((shape[1] * geometry[0][0] * geometry[0][1],
                                                 shape[0] * ho * wo)).astype(dtype)
    run = device.load("im2col").kernel("col2im", dtype)
    ref = reference("col2im")(col, shape, *geometry)
    for launch in LAUNCHES:
        np.testing.assert_array_equal(col2im(run, col, shape, *geometry, launch), ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_groups(device, dtype):
    """A grouped convolution's GEMM for group g takes rows [g*Cg*kh*kw, (g+1)*Cg*kh*kw) of col: they
    equal im2col of that group's channels alone (the kernel needs no groups argument)."""
    groups, (shape, *geometry) = 3, CONV["prime-mixed"]
    x = rng_for("groups").standard_normal((shape[0], 6, *shape[2:])).astype(dtype)
    col = im2col(device.load("im2col").kernel("im2col", dtype), x, *geometry, "full")
    rows = col.shape[0] // groups
    for g in range(groups):
        ref = reference("im2col")(x[:, 2 * g:2 * g + 2], *geometry)
        np.testing.assert_array_equal(col[g * rows:(g + 1) * rows], ref)


# ---------------------------------------------------------------- conv_implicit

def op_case_convolutions():
    """{case name: ConvProblem} for each distinct convolution the op cases (tests/op_cases.py) run."""
    found = {}
    for case in CASES:
        if "conv" in case.name:
            with plans.recording() as seen:
                case.fn(F, *minires_inputs(case, np.float64))
            for k, plan in enumerate(seen):
                if plan.problem not in found.values():
                    found[f"{case.name}-{k}" if k else case.name] = plan.problem
    return found


CONV_PROBLEMS = op_case_convolutions()


def conv_implicit(run, x, w, p, launch):
    """y (Cout, N*Ho*Wo) of problem p; grid (position tiles of 64, groups x tiles of block/16*4 channels)."""
    n, c, h, wd = x.shape
    cm = is_channel_major(x)
    ho, wo = p.out_hw
    y = np.full((p.cout, n * ho * wo), np.nan, x.dtype)
    block, blocks = LAUNCHES[launch]
    grid = (blocks or math.ceil(n * ho * wo / 64), blocks or p.groups * math.ceil(p.cout // p.groups / (block // 4)))
    run(grid, (block,), (canonical(x, cm), w, y, *i32((n, c, h, wd)), *strides_nc(cm, n, c, h * wd),
                         *i32((p.cout, p.groups, *p.ksize, *p.stride, *p.padding, *p.dilation, ho, wo))))
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major"])
@pytest.mark.parametrize("case", CONV_PROBLEMS)
def test_conv_implicit(device, case, layout, dtype):
    """Against the reference plan's forward (im2col, then a matmul per group), without bias."""
    p = CONV_PROBLEMS[case]
    rng = rng_for(case, "implicit")
    x = layouts(rng.standard_normal(p.x_shape).astype(dtype), layout)
    w = rng.standard_normal(p.w_shape).astype(dtype)
    y, _ = plans.Im2colGemm(p, (False, False, False)).forward(x, w, None)
    ref = np.ascontiguousarray(y.transpose(1, 0, 2, 3)).reshape(p.cout, -1)
    run = device.load("conv_implicit").kernel("conv_implicit", dtype)
    for launch in LAUNCHES:
        assert_close(conv_implicit(run, x, w, p, launch), ref, dtype)


def test_op_cases_give_the_convolutions_their_variety():
    """The problems above have groups, strides, padding, dilation and non-square kernels."""
    problems = CONV_PROBLEMS.values()
    assert len(problems) >= 20
    assert any(p.groups > 1 for p in problems) and any(p.groups == p.c for p in problems)
    for attribute in ("stride", "padding", "dilation", "ksize"):
        assert any(getattr(p, attribute)[0] != getattr(p, attribute)[1] for p in problems), attribute


# ---------------------------------------------------------------- pooling

POOL = {  # name: (x shape, ksize, stride, padding, dilation, ceil_mode)
    "resnet-3x3-s2": ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1), (1, 1), False),
    "2x2-s2": ((1, 4, 6, 7), (2, 2), (2, 2), (0, 0), (1, 1), False),
    "ceil-mixed": ((2, 2, 8, 11), (2, 3), (2, 1), (1, 1), (1, 1), True),
    "dilated-prime": ((1, 3, 13, 7), (3, 2), (1, 2), (1, 0), (2, 3), False),
    "ceil-overlap": ((3, 1, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), True),
}
VALUES = ["normal", "ties", "nan-inf"]


def pool_input(case, shape, values, dtype):
    """normal: N(0, 1); ties: small integers (many equal maxima in a window, for the tie rule);
    nan-inf: with some NaN, +inf and -inf."""
    rng = rng_for(case, values)
    x = rng.integers(-2, 2, shape).astype(dtype) if values == "ties" else rng.standard_normal(shape).astype(dtype)
    if values == "nan-inf":
        flat = x.reshape(-1)
        for v in (np.nan, np.inf, -np.inf):
            flat[rng.choice(flat.size, max(1, flat.size // 20), replace=False)] = v
    return x


def pool_geometry(shape, ksize, stride, padding, dilation, ceil_mode):
    return tuple(pool_out_size(n, k, s, p, d, ceil_mode)
                 for n, k, s, p, d in zip(shape[2:], ksize, stride, padding, dilation))


def pool_args(h, w, ho, wo, ksize, stride, padding, dilation=None):
    """The geometry scalars of a pooling kernel, in its C types."""
    return i32((h, w, ho, wo, *ksize, *stride, *padding, *(dilation or ())))


def maxpool_forward(run, x, ksize, stride, padding, dilation, ohw, launch):
    n, c, h, w = x.shape
    cm = is_channel_major(x)
    planes = to_planes(x, cm)
    y = np.full((n * c, *ohw), np.nan, x.dtype)
    arg = np.full(y.shape, -1, np.int32)
    run(*grid(y.size, launch), (planes, y, arg, n * c, *pool_args(h, w, *ohw, ksize, stride, padding, dilation)))
    return from_planes(y, n, c, cm), from_planes(arg, n, c, cm)


def maxpool_backward(run, gy, arg, x_shape, ksize, stride, padding, dilation, launch):
    n, c, h, w = x_shape
    cm = is_channel_major(gy)
    gx = np.full((n * c, h, w), np.nan, gy.dtype)
    run(*grid(gx.size, launch), (to_planes(gy, cm), to_planes(arg, cm), gx, n * c,
                                 *pool_args(h, w, *gy.shape[2:], ksize, stride, padding, dilation)))
    return from_planes(gx, n, c, cm)


def avgpool_forward(run, x, ksize, stride, padding, ohw, divisor, launch):
    n, c, h, w = x.shape
    cm = is_channel_major(x)
    y = np.full((n * c, *ohw), np.nan, x.dtype)
    run(*grid(y.size, launch), (to_planes(x, cm), np.ascontiguousarray(divisor), y, n * c,
                                *pool_args(h, w, *ohw, ksize, stride, padding)))
    return from_planes(y, n, c, cm)


def avgpool_backward(run, gy, x_shape, ksize, stride, padding, divisor, launch):
    n, c, h, w = x_shape
    cm = is_channel_major(gy)
    gx = np.full((n * c, h, w), np.nan, gy.dtype)
    run(*grid(gx.size, launch), (to_planes(gy, cm), np.ascontiguousarray(divisor), gx, n * c,
                                 *pool_args(h, w, *gy.shape[2:], ksize, stride, padding)))
    return from_planes(gx, n, c, cm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("case", POOL)
def test_maxpool(device, case, layout, values, dtype):
    """Forward (values and argmax: the first maximum wins ties, NaN wins) and backward, bit-exact."""
    shape, ksize, stride, padding, dilation, ceil_mode = POOL[case]
    x = layouts(pool_input(case, shape, values, dtype), layout)
    ohw = pool_geometry(shape, ksize, stride, padding, dilation, ceil_mode)
    family = device.load("pooling")
    y_ref, arg_ref = reference("maxpool_forward")(x, ksize, stride, padding, dilation, ohw)
    gy = layouts(rng_for(case, "gy").standard_normal(y_ref.shape).astype(dtype), layout)
    gx_ref = reference("maxpool_backward")(gy, arg_ref, shape, ksize, stride, padding, dilation)
    for launch in LAUNCHES:
        y, arg = maxpool_forward(family.kernel("maxpool_forward", dtype), x, ksize, stride, padding, dilation, ohw,
                                 launch)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(arg, arg_ref)
        gx = maxpool_backward(family.kernel("maxpool_backward", dtype), gy, arg_ref, shape, ksize, stride, padding,
                              dilation, launch)
        np.testing.assert_array_equal(gx, gx_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("case", POOL)
def test_avgpool(device, case, layout, count_include_pad, dtype):
    """Forward and backward, bit-exact (the reference's additions in its order, then its division)."""
    shape, ksize, stride, padding, _, ceil_mode = POOL[case]
    x = layouts(pool_input(case, shape, "normal", dtype), layout)
    ohw = pool_geometry(shape, ksize, stride, padding, (1, 1), ceil_mode)
    divisor = avgpool_divisor(np, shape[2:], ohw, ksize, stride, padding, count_include_pad, dtype)
    family = device.load("pooling")
    y_ref = reference("avgpool_forward")(x, ksize, stride, padding, ohw, divisor)
    gy = layouts(rng_for(case, "gy").standard_normal(y_ref.shape).astype(dtype), layout)
    gx_ref = reference("avgpool_backward")(gy, shape, ksize, stride, padding, divisor)
    for launch in LAUNCHES:
        y = avgpool_forward(family.kernel("avgpool_forward", dtype), x, ksize, stride, padding, ohw, divisor, launch)
        np.testing.assert_array_equal(y, y_ref)
        gx = avgpool_backward(family.kernel("avgpool_backward", dtype), gy, shape, ksize, stride, padding, divisor,
                              launch)
        np.testing.assert_array_equal(gx, gx_ref)


# ---------------------------------------------------------------- batch norm

BN = {"map": (4, 3, 25), "prime": (3, 7, 13), "one-image": (1, 5, 31), "one-value": (5, 2, 1), "wide": (2, 1, 300)}
BN_LAUNCHES = {"warp": 32, "block": 256}  # block sizes: one warp; eight warps, mostly idle on small channels


def bn_layout(cm, n, c, length):
    """(canonical shape, sn, sc) of an (N, C, L) map in NCHW (cm False) or channel-major memory."""
    return ((c, n, length) if cm else (n, c, length)), *strides_nc(cm, n, c, length)


def bn_stats(run, x, eps, block):
    n, c, length = x.shape
    cm = is_channel_major(x)
    stats = np.full((3, c), np.nan, x.dtype)
    _, sn, sc = bn_layout(cm, n, c, length)
    # one block per channel, one fewer than channels: the channel loop goes round where C > 2
    run((max(1, c - 1),), (block,), (canonical(x, cm), stats, *i32((n, c, length)), sn, sc, x.dtype.type(eps)))
    return stats


def bn_forward(run, x, mean, invstd, weight, bias, relu, residual):
    n, c, length = x.shape
    cm = is_channel_major(x)
    shape, _, sc = bn_layout(cm, n, c, length)
    y = np.full(shape, np.nan, x.dtype)
    xc = canonical(x, cm)
    res = xc if residual is None else canonical(residual, cm)
    run(*grid(y.size, "full"), (xc, mean, invstd, weight, bias, res, y, y.size, i32(c), sc, residual is not None, relu))
    return y.swapaxes(0, 1) if cm else y


def bn_backward(run, gy, x, mean, invstd, weight, bias, training, relu, block):
    n, c, length = x.shape
    cm = is_channel_major(gy)
    shape, sn, sc = bn_layout(cm, n, c, length)
    gx = np.full(shape, np.nan, x.dtype)
    gweight, gbias = np.full(c, np.nan, x.dtype), np.full(c, np.nan, x.dtype)
    # two blocks: the channel loop goes round where C > 2
    run((2,), (block,), (canonical(gy, cm), canonical(x, cm), mean, invstd, weight, bias, gx, gweight, gbias,
                         *i32((n, c, length)), sn, sc, training, relu))
    return (gx.swapaxes(0, 1) if cm else gx), gweight, gbias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("case", BN)
def test_bn_stats_and_forward(device, case, layout, dtype):
    """Training statistics (mean, var, invstd) for each block size; the normalization with and
    without the fused residual and ReLU."""
    eps = 1e-5
    rng = rng_for(case)
    x = layouts((3 + 2 * rng.standard_normal(BN[case])).astype(dtype), layout)
    family = device.load("batchnorm")
    mean, var = reference("bn_stats")(x)
    invstd = 1 / np.sqrt(var + dtype(eps))
    for block in BN_LAUNCHES.values():
        for got, ref in zip(bn_stats(family.kernel("bn_stats", dtype), x, eps, block), (mean, var, invstd)):
            assert_close(got, ref, dtype)
    weight, bias = rng.standard_normal((2, x.shape[1])).astype(dtype)
    residual = layouts(rng.standard_normal(x.shape).astype(dtype), layout)
    for relu, res in [(False, None), (True, None), (True, residual), (False, residual)]:
        got = bn_forward(family.kernel("bn_forward", dtype), x, mean, invstd, weight, bias, relu, res)
        assert_close(got, reference("bn_forward")(x, mean, invstd, weight, bias, relu, res), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major"])
@pytest.mark.parametrize("case", BN)
def test_bn_backward(device, case, layout, dtype):
    """gx, gweight, gbias in training and eval, with and without the fused ReLU, for each block size."""
    rng = rng_for(case, "backward")
    x = layouts((1 + rng.standard_normal(BN[case])).astype(dtype), layout)
    gy = layouts(rng.standard_normal(x.shape).astype(dtype), layout)
    mean, var = reference("bn_stats")(x)
    invstd = 1 / np.sqrt(var + dtype(1e-5))
    weight, bias = rng.standard_normal((2, x.shape[1])).astype(dtype)
    run = device.load("batchnorm").kernel("bn_backward", dtype)
    for training in (True, False):
        for relu in (False, True):
            ref = reference("bn_backward")(gy, x, mean, invstd, weight, training, bias, relu)
            for block in BN_LAUNCHES.values():
                for got, want in zip(bn_backward(run, gy, x, mean, invstd, weight, bias, training, relu, block), ref):
                    assert_close(got, want, dtype)


# ---------------------------------------------------------------- elementwise

SIZES = [1, 31, 1009]  # one element, under a warp, a prime over many blocks


def flat_input(rng, n, dtype):
    """N(0, 1) with a NaN, an inf and a -inf where there is room."""
    a = rng.standard_normal(n).astype(dtype)
    a[:3][::-1][:min(3, n)] = [np.nan, np.inf, -np.inf][:min(3, n)]
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_add_relu_and_relu_backward(device, n, dtype):
    rng = rng_for("elementwise", n)
    a, b, g = (flat_input(rng, n, dtype) for _ in range(3))
    family = device.load("elementwise")
    for launch in LAUNCHES:
        out = np.full(n, np.nan, dtype)
        family.kernel("add_relu", dtype)(*grid(n, launch), (a, b, out, n))
        np.testing.assert_array_equal(out, reference("add_relu")(a, b))
        gx = np.full(n, np.nan, dtype)
        family.kernel("relu_backward", dtype)(*grid(n, launch), (g, out, gx, n))
        np.testing.assert_array_equal(gx, reference("relu_backward")(g, out))


# ---------------------------------------------------------------- optimizers

SGD = {
    "plain": dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    "momentum-decay": dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False),
    "dampening": dict(momentum=0.8, dampening=0.3, weight_decay=0.0, nesterov=False),
    "nesterov": dict(momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", SGD)
def test_sgd_update(device, config, dtype):
    """Three steps (the first sets the momentum buffer) against kernels/optim.py's reference."""
    o = SGD[config]
    rng = rng_for("sgd", config)
    n = 1009
    p = rng.standard_normal(n).astype(dtype)
    buf = np.full(n, np.nan, dtype)
    p_ref, buf_ref = p.copy(), buf.copy()
    run = device.load("optim").kernel("sgd_update", dtype)
    t = dtype
    for step in range(3):
        grad = rng.standard_normal(n).astype(dtype)
        reference("sgd_update")(p_ref, grad, buf_ref if o["momentum"] else None, 0.1, o["momentum"], o["dampening"],
                                o["weight_decay"], o["nesterov"], step == 0)
        run(*grid(n, "few"), (p, grad, buf if o["momentum"] else p, n, t(0.1), t(o["momentum"]), t(1 - o["dampening"]),
                              t(o["weight_decay"]), o["nesterov"], step == 0))
        assert_close(p, p_ref, dtype)
        assert_close(buf, buf_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_update(device, amsgrad, dtype):
    """Four steps against minires.optim.AdamW's update (the reference), its state included."""
    lr, (beta1, beta2), eps, weight_decay = 0.01, (0.8, 0.99), 1e-6, 0.1
    group = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    rng = rng_for("adamw", amsgrad)
    n = 1009
    p = rng.standard_normal(n).astype(dtype)
    ref, state = types.SimpleNamespace(data=p.copy()), {}
    m, v, vmax = np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    run = device.load("optim").kernel("adamw_update", dtype)
    t = dtype
    for step in range(1, 5):
        grad = (rng.standard_normal(n) * (-1) ** step).astype(dtype)
        AdamW.update(None, ref, grad, state, group)
        run(*grid(n, "full"), (p, grad, m, v, vmax if amsgrad else v, n, t(1 - lr * weight_decay), t(beta1),
                               t(1 - beta1), t(beta2), t(1 - beta2), t(lr / (1 - beta1 ** step)),
                               t(math.sqrt(1 - beta2 ** step)), t(eps), amsgrad))
        assert_close(p, ref.data, dtype)
        assert_close(m, state["exp_avg"], dtype)
        assert_close(v, state["exp_avg_sq"], dtype)
        if amsgrad:
            assert_close(vmax, state["max_exp_avg_sq"], dtype)
