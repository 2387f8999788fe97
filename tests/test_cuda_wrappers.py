"""minires.cuda.kernels, the wrappers that make our CUDA kernels minires's kernel versions, run on the
test-only device "cudacpu" (tests/cuda_cpu/device.py: NumPy memory under its own array type, the
.cu kernels compiled for the CPU through the shim, every launch argument checked against the
kernel's C signature). Each wrapper, called through minires.kernels' dispatch on cudacpu arrays,
is compared with its NumPy reference on plain NumPy arrays over the op cases (strides, padding,
dilation, groups, ceil_mode, odd and prime sizes, NCHW, channel-major and non-contiguous inputs,
float32 and float64): values, shape, dtype, memory layout (strides), and that the result is the
device's array type (allocated with its array module).

Comparisons as tests/test_cuda_kernels.py: bit-exact where the .cu kernel's comment says so
(im2col, col2im, pooling, ReLU); else (batch norm, SGD: another order of operations) max |got - ref|
<= rtol * max |ref| per array, rtol 1e-6 in float32 and 1e-12 in float64.
"""
import inspect
import zlib

import numpy as np
import pytest
from cuda_cpu import device as cudacpu

import minires
import minires.functional as F
from minires import fusion, kernels, plans
from minires.cuda import kernels as wrappers
from minires.kernels.cuda import KERNELS
from minires.kernels._geometry import out_hw, pool_out_size
from minires.kernels.pooling import avgpool_divisor

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-6, np.float64: 1e-12}
LAYOUTS = ["nchw", "channel-major", "strided", "channel-slice"]


@pytest.fixture(scope="module", autouse=True)
def device():
    cudacpu.install(max_grid=wrappers.MAX_GRID, block=64)  # the GPU's grids; two warps a block, to keep the CPU quick


def rng_for(*key):
    """A generator seeded by the key, the same in every run."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def layouts(x, layout):
    """Host array x (N, C, ...) in the named memory layout: NCHW, channel-major, every other element
    of a wider array (strided), or channels 1.. of an NCHW array with one more (channel-slice)."""
    if layout == "nchw":
        return x
    if layout == "channel-major":
        return np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)
    if layout == "strided":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    more = np.zeros((x.shape[0], x.shape[1] + 1) + x.shape[2:], x.dtype)
    more[:, 1:] = x
    return more[:, 1:]


def dev(a):
    """Host array a as a cudacpu array: the same memory, strides and values (None stays None)."""
    return None if a is None else a.view(cudacpu.CudaCpuArray)


def on_device(name, *args, **kwargs):
    """Kernel ``name`` called through minires.kernels' dispatch with its array arguments on cudacpu."""
    move = lambda a: dev(a) if isinstance(a, np.ndarray) else a
    return getattr(kernels, name)(*map(move, args), **{k: move(v) for k, v in kwargs.items()})


def reference(name):
    return getattr(kernels, name).impls["numpy"]


def check(got, ref, exact=True):
    """got (cudacpu) equals ref (host): type, shape, dtype, strides, then values (bit for bit, or
    within RTOL of the array's largest magnitude); NaN where ref has NaN."""
    assert type(got) is cudacpu.CudaCpuArray, f"a {type(got).__name__}, not the device's array type"
    assert (got.shape, got.dtype, got.strides) == (ref.shape, ref.dtype, ref.strides)
    got = got.view(np.ndarray)
    if exact:
        np.testing.assert_array_equal(got, ref)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    scale = max(np.abs(np.nan_to_num(ref)).max(initial=0), np.finfo(ref.dtype).tiny)
    err = np.abs(np.nan_to_num(got) - np.nan_to_num(ref)).max(initial=0) / scale
    assert err <= RTOL[ref.dtype.type], f"relative error {err:.3g} > {RTOL[ref.dtype.type]}"


def test_every_cuda_kernel_with_a_reference_is_wrapped_with_its_signature():
    """The wrappers are the kernels of kernels/cuda that minires.kernels has, plus bn_train_forward
    (which composes two of them); each registered under cudacpu with its reference's signature."""
    cuda_names = {k for family in KERNELS.values() for k in family}
    with_reference = {k for k in cuda_names if isinstance(getattr(kernels, k, None), kernels.Kernel)}
    assert set(wrappers.WRAPPERS) == with_reference | {"bn_train_forward"}
    for name, wrapper in wrappers.WRAPPERS.items():
        assert getattr(kernels, name).impls[cudacpu.NAME] is wrapper
        assert inspect.signature(wrapper) == inspect.signature(reference(name)), name


# ---------------------------------------------------------------- im2col / col2im

CONV = {  # name: (x shape, ksize, stride, padding, dilation)
    "3x3": ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    "1x1": ((3, 2, 5, 5), (1, 1), (1, 1), (0, 0), (1, 1)),
    "stem-7x7-s2": ((2, 3, 11, 11), (7, 7), (2, 2), (3, 3), (1, 1)),
    "prime-mixed": ((3, 5, 11, 13), (3, 5), (2, 3), (2, 1), (1, 2)),
    "dilated": ((2, 2, 9, 7), (3, 3), (1, 1), (2, 2), (2, 3)),
    "stride-3": ((1, 3, 13, 5), (2, 3), (3, 2), (0, 2), (3, 1)),
    "one-output": ((2, 3, 3, 3), (3, 3), (1, 1), (0, 0), (1, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV)
def test_im2col(case, layout, dtype):
    """The whole batch, image ranges (images=, read in place), and into a given out=."""
    shape, *geometry = CONV[case]
    x = layouts(rng_for(case).standard_normal(shape).astype(dtype), layout)
    check(on_device("im2col", x, *geometry), reference("im2col")(x, *geometry))
    n = shape[0]
    for images in {(0, n), (0, 1), (n - 1, n), (n // 2, n)}:
        check(on_device("im2col", x, *geometry, images=images), reference("im2col")(x, *geometry, images=images))
    ref = reference("im2col")(x, *geometry)
    out = dev(np.full_like(ref, np.nan))
    got = on_device("im2col", x, *geometry, out=out)
    assert np.shares_memory(got, out)
    check(got, ref)


def test_im2col_checks_out():
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="im2col: out must be"):
        on_device("im2col", x, (3, 3), (1, 1), (1, 1), (1, 1), out=np.zeros((18, 24), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_groups(dtype):
    """Group g's GEMM takes its block of col's rows: they equal im2col of the group's channels alone."""
    groups, (shape, *geometry) = 3, CONV["prime-mixed"]
    x = layouts(rng_for("groups").standard_normal((shape[0], 6, *shape[2:])).astype(dtype), "channel-major")
    col = on_device("im2col", x, *geometry).view(np.ndarray)
    rows = col.shape[0] // groups
    for g in range(groups):
        np.testing.assert_array_equal(col[g * rows:(g + 1) * rows], reference("im2col")(x[:, 2 * g:2 * g + 2], *geometry))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("case", CONV)
def test_col2im(case, contiguous, dtype):
    """Channel-major gx, as the reference returns it; col C-contiguous or transposed in memory."""
    shape, *geometry = CONV[case]
    ho, wo = out_hw(shape[2:], *geometry)
    rows, cols = shape[1] * geometry[0][0] * geometry[0][1], shape[0] * ho * wo
    col = rng_for(case, "col").standard_normal((rows, cols)).astype(dtype)
    col = col if contiguous else np.ascontiguousarray(col.T).T
    check(on_device("col2im", col, shape, *geometry), reference("col2im")(col, shape, *geometry))


# ---------------------------------------------------------------- conv_implicit (and its plan)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("case", ["3x3", "stem-7x7-s2", "prime-mixed", "dilated"])
def test_conv_implicit(case, groups, layout, dtype):
    """y (Cout, N, Ho, Wo), C-contiguous, equal to the reference plan's channel-major y before its bias;
    output channels past one tile of the launch (block / 16 * 4 per group)."""
    shape, ksize, *geometry = CONV[case]
    shape = (shape[0], 3 * groups) + shape[2:]
    rng = rng_for(case, "implicit", groups)
    x = layouts(rng.standard_normal(shape).astype(dtype), layout)
    w = rng.standard_normal((21 * groups, 3) + ksize).astype(dtype)
    p = minires.plans.ConvProblem(x.shape, w.shape, *geometry, groups, np.dtype(dtype), "cpu")
    ref = plans.Im2colGemm(p, (False, False, False)).forward(x, w, None)[0].transpose(1, 0, 2, 3)
    check(wrappers.conv_implicit(dev(x), dev(w), *geometry, groups), np.ascontiguousarray(ref), exact=False)


def test_explain_shows_implicit_gemm_where_col_is_large(monkeypatch):
    """On the device, a convolution whose col would pass the threshold is implicit GEMM; one at or below
    it, im2col + GEMM (1x1 convolutions, which make no col, stay pointwise)."""
    model = TinyResNet().to(cudacpu.NAME)
    rows = minires.explain(model, (2, 3, 13, 13), device=cudacpu.NAME)
    sizes = sorted({r.chosen.problem.col_bytes for r in rows if r.chosen.problem.ksize != (1, 1)})
    monkeypatch.setitem(plans.THRESHOLDS, "implicit_gemm_col_bytes", sizes[0])  # the smaller col is not above it
    rows = minires.explain(model, (2, 3, 13, 13), device=cudacpu.NAME)
    for r in rows:
        p = r.chosen.problem
        expected = "pointwise gemm" if p.ksize == (1, 1) else "implicit gemm" if p.col_bytes > sizes[0] else "im2col+gemm"
        assert r.plan == expected, (r.module, p.col_bytes, sizes)
    assert {r.plan for r in rows} == {"pointwise gemm", "implicit gemm", "im2col+gemm"}


def test_a_training_step_through_implicit_gemm_matches_the_cpu(monkeypatch):
    """Every 3x3 convolution of TinyResNet through implicit GEMM on the device: the CPU's numbers."""
    monkeypatch.setitem(plans.THRESHOLDS, "implicit_gemm_col_bytes", 0)
    with plans.recording() as seen:
        step = train_step(cudacpu.NAME)
    assert sum(p.name == "implicit gemm" for p in seen) == 4  # stem and conv2, training and eval
    assert_same_as_the_cpu(*step[:4])


# ---------------------------------------------------------------- pooling

POOL = {  # name: (x shape, ksize, stride, padding, dilation, ceil_mode)
    "resnet-3x3-s2": ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1), (1, 1), False),
    "2x2-s2-odd": ((1, 4, 7, 7), (2, 2), (2, 2), (0, 0), (1, 1), False),
    "ceil-mixed": ((2, 2, 8, 11), (2, 3), (2, 1), (1, 1), (1, 1), True),
    "dilated-prime": ((3, 3, 13, 7), (3, 2), (1, 2), (1, 0), (2, 3), False),
    "ceil-overlap": ((3, 1, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), True),
}


def pool_input(case, shape, values, dtype):
    """normal: N(0, 1); ties: small integers (equal maxima, for the tie rule); nan-inf: with some NaN,
    +inf and -inf."""
    rng = rng_for(case, values)
    x = rng.integers(-2, 2, shape).astype(dtype) if values == "ties" else rng.standard_normal(shape).astype(dtype)
    if values == "nan-inf":
        flat = x.reshape(-1)
        for v in (np.nan, np.inf, -np.inf):
            flat[rng.choice(flat.size, max(1, flat.size // 20), replace=False)] = v
    return x


def pool_ohw(shape, ksize, stride, padding, dilation, ceil_mode):
    return tuple(pool_out_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(shape[2:], ksize, stride, padding, dilation))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "ties", "nan-inf"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", POOL)
def test_maxpool(case, layout, values, dtype):
    """Forward (values and argmax: the first maximum wins ties, NaN wins) and backward, bit-exact."""
    shape, ksize, stride, padding, dilation, ceil_mode = POOL[case]
    x = layouts(pool_input(case, shape, values, dtype), layout)
    ohw = pool_ohw(shape, ksize, stride, padding, dilation, ceil_mode)
    y_ref, arg_ref = reference("maxpool_forward")(x, ksize, stride, padding, dilation, ohw)
    y, arg = on_device("maxpool_forward", x, ksize, stride, padding, dilation, ohw)
    check(y, y_ref)
    check(arg, arg_ref)
    gy = layouts(rng_for(case, "gy").standard_normal(y_ref.shape).astype(dtype), layout)
    check(on_device("maxpool_backward", gy, arg_ref, shape, ksize, stride, padding, dilation),
          reference("maxpool_backward")(gy, arg_ref, shape, ksize, stride, padding, dilation))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", POOL)
def test_avgpool(case, layout, count_include_pad, dtype):
    """Forward and backward, bit-exact."""
    shape, ksize, stride, padding, _, ceil_mode = POOL[case]
    x = layouts(pool_input(case, shape, "normal", dtype), layout)
    ohw = pool_ohw(shape, ksize, stride, padding, (1, 1), ceil_mode)
    divisor = avgpool_divisor(np, shape[2:], ohw, ksize, stride, padding, count_include_pad, dtype)
    y_ref = reference("avgpool_forward")(x, ksize, stride, padding, ohw, divisor)
    check(on_device("avgpool_forward", x, ksize, stride, padding, ohw, divisor), y_ref)
    gy = layouts(rng_for(case, "gy").standard_normal(y_ref.shape).astype(dtype), layout)
    check(on_device("avgpool_backward", gy, shape, ksize, stride, padding, divisor),
          reference("avgpool_backward")(gy, shape, ksize, stride, padding, divisor))


# ---------------------------------------------------------------- batch norm

BN = {"map": (4, 3, 25), "prime": (3, 7, 13), "one-image": (1, 5, 31), "one-value": (5, 2, 1), "wide": (2, 1, 300)}


def bn_inputs(case, layout, dtype):
    """x (N, C, L) with mean 3, gy, a residual, weight and bias, the first three in ``layout``."""
    rng = rng_for(case, "bn")
    shape = BN[case]
    x, gy, residual = (layouts(a.astype(dtype), layout)
                       for a in (3 + 2 * rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)))
    weight, bias = rng.standard_normal((2, shape[1])).astype(dtype)
    return x, gy, residual, weight, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", BN)
def test_bn_stats_and_forward(case, layout, dtype):
    """bn_stats; bn_train_forward and (eval) bn_forward with and without weight and bias, the fused
    ReLU and the residual."""
    x, _, residual, weight, bias = bn_inputs(case, layout, dtype)
    for got, ref in zip(on_device("bn_stats", x), reference("bn_stats")(x)):
        check(got, ref, exact=False)
    mean, var = reference("bn_stats")(x)
    invstd = 1 / np.sqrt(var + dtype(1e-5))
    for w, b in [(weight, bias), (None, None)]:
        for relu, res in [(False, None), (True, None), (True, residual), (False, residual)]:
            for got, ref in zip(on_device("bn_train_forward", x, w, b, 1e-5, relu, res),
                                reference("bn_train_forward")(x, w, b, 1e-5, relu, res)):
                check(got, ref, exact=False)
            check(on_device("bn_forward", x, mean, invstd, w, b, relu, residual=res),
                  reference("bn_forward")(x, mean, invstd, w, b, relu, residual=res), exact=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", BN)
def test_bn_backward(case, layout, dtype):
    """gx, gweight, gbias in training and eval, with and without the fused ReLU, weight and bias."""
    x, gy, _, weight, bias = bn_inputs(case, layout, dtype)
    mean, var = reference("bn_stats")(x)
    invstd = 1 / np.sqrt(var + dtype(1e-5))
    for training in (True, False):
        for relu in (False, True):
            for w, b in [(weight, bias), (None, None)]:
                for got, ref in zip(on_device("bn_backward", gy, x, mean, invstd, w, training, b, relu),
                                    reference("bn_backward")(gy, x, mean, invstd, w, training, b, relu)):
                    check(got, ref, exact=False)


# ---------------------------------------------------------------- elementwise

ELEMENTWISE = {  # name: (shape, layout)
    "nchw": ((2, 3, 5, 7), "nchw"), "channel-major": ((3, 2, 5, 7), "channel-major"),
    "strided": ((2, 3, 5, 7), "strided"), "channel-slice": ((2, 3, 5, 7), "channel-slice"),
    "prime-1d": ((1009,), "nchw"), "scalar": ((), "nchw"), "empty": ((0, 3, 2, 2), "nchw"),
}


def with_specials(rng, shape, dtype):
    """N(0, 1) with a NaN, an inf and a -inf where there is room."""
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    flat[:3][::-1][:min(3, a.size)] = [np.nan, np.inf, -np.inf][:min(3, a.size)]
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ELEMENTWISE)
def test_add_relu_and_relu_backward(case, dtype):
    """Bit-exact; the result in a's layout (add_relu) or out's (relu_backward), the other argument
    in another layout where there are two."""
    shape, layout = ELEMENTWISE[case]
    rng = rng_for("elementwise", case)
    a, b, g = (with_specials(rng, shape, dtype) for _ in range(3))
    a = layouts(a, layout) if a.ndim >= 2 else a
    out = reference("add_relu")(a, b)
    check(on_device("add_relu", a, b), out)
    check(on_device("relu_backward", g, out), laid_out_as(reference("relu_backward")(g, out), out))


def laid_out_as(ref, a):
    """ref's values in a's memory layout (a copy). The references' results follow NumPy's choice of
    layout, which for arguments of two layouts is NCHW; the kernels' follow the argument named."""
    out = np.empty_like(a, dtype=ref.dtype)
    out[...] = ref
    return out


# ---------------------------------------------------------------- SGD

SGD = {
    "plain": dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    "momentum-decay": dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False),
    "dampening": dict(momentum=0.8, dampening=0.3, weight_decay=0.0, nesterov=False),
    "nesterov": dict(momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "strided"])
@pytest.mark.parametrize("config", SGD)
def test_sgd_update(config, layout, dtype):
    """Three steps in place (the first sets the momentum buffer), p contiguous or a strided view."""
    o = SGD[config]
    rng = rng_for("sgd", config)
    p_ref = rng.standard_normal((3, 7, 3, 3)).astype(dtype)
    p = layouts(p_ref.copy(), layout)
    buf, buf_ref = (np.zeros_like(p_ref), np.zeros_like(p_ref)) if o["momentum"] else (None, None)
    for step in range(3):
        grad = rng.standard_normal(p.shape).astype(dtype)
        args = (0.1, o["momentum"], o["dampening"], o["weight_decay"], o["nesterov"], step == 0)
        reference("sgd_update")(p_ref, grad, buf_ref, *args)
        assert on_device("sgd_update", p, grad, buf, *args) is None
        check(dev(np.ascontiguousarray(p)), p_ref, exact=False)  # updated in place, through the view
        if buf is not None:
            check(dev(buf), buf_ref, exact=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "strided"])
@pytest.mark.parametrize("amsgrad", [False, True], ids=["adamw", "amsgrad"])
def test_adamw_update(amsgrad, layout, dtype):
    """Three steps in place on p and the state m, v (and vmax), p contiguous or a strided view."""
    rng = rng_for("adamw", amsgrad)
    p_ref = rng.standard_normal((3, 7, 3, 3)).astype(dtype)
    p = layouts(p_ref.copy(), layout)
    state_ref = [np.zeros_like(p_ref) for _ in range(3 if amsgrad else 2)]
    state = [np.zeros_like(p_ref) for _ in state_ref]
    for t in range(1, 4):
        grad = rng.standard_normal(p.shape).astype(dtype)
        args = (1e-2, 0.9, 0.999, 1e-8, 0.05, t)
        reference("adamw_update")(p_ref, grad, *state_ref, *([] if amsgrad else [None]), *args)
        assert on_device("adamw_update", p, grad, *state, *([] if amsgrad else [None]), *args) is None
        check(dev(np.ascontiguousarray(p)), p_ref, exact=False)
        for s, s_ref in zip(state, state_ref):
            check(dev(s), s_ref, exact=False)


# ---------------------------------------------------------------- launches, errors

def test_a_capped_grid_covers_everything(monkeypatch):
    """With at most 2 blocks per grid axis every kernel's grid-stride loops go round (im2col's rows
    and columns, col2im's planes, batch norm's channels, the flat kernels' elements), same results."""
    monkeypatch.setattr(wrappers, "MAX_GRID", 2)
    shape, *geometry = CONV["prime-mixed"]
    x = layouts(rng_for("capped").standard_normal(shape), "channel-major")
    col = reference("im2col")(x, *geometry)
    check(on_device("im2col", x, *geometry), col)
    check(on_device("col2im", col, shape, *geometry), reference("col2im")(col, shape, *geometry))
    ohw = pool_ohw(shape, (3, 3), (1, 1), (1, 1), (1, 1), False)
    for got, ref in zip(on_device("maxpool_forward", x, (3, 3), (1, 1), (1, 1), (1, 1), ohw),
                        reference("maxpool_forward")(x, (3, 3), (1, 1), (1, 1), (1, 1), ohw)):
        check(got, ref)
    x3 = x.reshape(shape[0], shape[1], -1)
    for got, ref in zip(on_device("bn_train_forward", x3, None, None, 1e-5), reference("bn_train_forward")(x3, None, None, 1e-5)):
        check(got, ref, exact=False)
    mean, var = reference("bn_stats")(x3)
    for got, ref in zip(on_device("bn_backward", x3, x3, mean, var, None, True),
                        reference("bn_backward")(x3, x3, mean, var, None, True)):
        check(got, ref, exact=False)
    check(on_device("add_relu", x, x), reference("add_relu")(x, x))


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_other_dtypes_are_one_line_errors(dtype):
    x = np.ones((2, 3, 5, 5), dtype)
    calls = {
        "im2col": lambda: on_device("im2col", x, (3, 3), (1, 1), (1, 1), (1, 1)),
        "maxpool_forward": lambda: on_device("maxpool_forward", x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2)),
        "bn_stats": lambda: on_device("bn_stats", x.reshape(2, 3, -1)),
        "add_relu": lambda: on_device("add_relu", x, x),
        "sgd_update": lambda: on_device("sgd_update", x, x, None, 0.1, 0.0, 0.0, 0.0, False, True),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError) as e:
            call()
        assert str(e.value) == f"{name}: no CUDA kernel for dtype {np.dtype(dtype)} (float32 and float64 only)"


def test_the_wrappers_use_only_what_cupy_has():
    """Every array-module function the wrappers call exists in the installed CuPy (it imports without
    a GPU), so that the same wrappers run on CuPy arrays."""
    cupy = pytest.importorskip("cupy")
    cudacpu.used.clear()
    x = np.ones((2, 3, 5, 5), np.float32)
    x3 = x.reshape(2, 3, -1)
    on_device("col2im", on_device("im2col", x, (3, 3), (1, 1), (1, 1), (1, 1)), x.shape, (3, 3), (1, 1), (1, 1), (1, 1))
    y, arg = on_device("maxpool_forward", x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
    on_device("maxpool_backward", y, arg, x.shape, (2, 2), (2, 2), (0, 0), (1, 1))
    on_device("avgpool_backward", on_device("avgpool_forward", x, (2, 2), (2, 2), (0, 0), (2, 2), 4.0),
              x.shape, (2, 2), (2, 2), (0, 0), 4.0)
    y, mean, var, invstd = on_device("bn_train_forward", x3, None, None, 1e-5, True, x3)
    on_device("bn_backward", y, x3, mean, invstd, None, True)
    on_device("relu_backward", on_device("add_relu", x, x), x)
    on_device("sgd_update", x.copy(), x, np.zeros_like(x), 0.1, 0.9, 0.0, 0.0, False, True)
    assert cudacpu.used and all(hasattr(cupy, name) for name in cudacpu.used), sorted(cudacpu.used)


# ---------------------------------------------------------------- the engine on the device

class TinyResNet(minires.nn.Module):
    """Every op whose kernels have wrappers: a strided stem, batch norm with its fused ReLU and
    residual, max pooling, a dilated grouped convolution, add_relu, a plain ReLU, average pooling
    with ceil_mode."""

    def __init__(self):
        super().__init__()
        nn = minires.nn
        self.stem, self.bn1 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        h = F.max_pool2d(self.bn1.fused(self.stem(x), relu=True), 3, 2, 1)
        h = self.bn2.fused(self.conv2(h), relu=True, residual=h)
        h = F.relu(self.bn3(fusion.add_relu(self.conv3(h), h)))
        h = F.avg_pool2d(h, 2, ceil_mode=True)
        return self.fc(h.reshape(h.shape[0], -1))


def train_step(device):
    """One SGD step and an eval forward of TinyResNet in float64 on ``device``: host copies of the
    loss, the gradients, the new state and the eval logits, and the state's arrays themselves."""
    minires.manual_seed(0)
    model = TinyResNet().to(np.float64).to(device)
    opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((2, 3, 13, 13))).to(device)
    loss = F.cross_entropy(model(x), minires.tensor(rng.integers(0, 5, 2)).to(device))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    opt.step()
    model.eval()
    logits = model(x).numpy()
    state = model.state_dict()
    return loss.item(), grads, {k: v.numpy() for k, v in state.items()}, logits, [v.data for v in state.values()]


def test_a_training_step_on_the_device_runs_the_wrappers(monkeypatch):
    """Every wrapper the ops reach is called (bn_stats alone is not: training uses bn_train_forward),
    nothing falls back to a reference, the state stays on the device, and the numbers are the CPU's."""
    calls = dict.fromkeys(wrappers.WRAPPERS, 0)

    def counted(name, wrapper):
        def call(*args, **kwargs):
            calls[name] += 1
            return wrapper(*args, **kwargs)
        return call

    for name, wrapper in wrappers.WRAPPERS.items():
        monkeypatch.setitem(getattr(kernels, name).impls, cudacpu.NAME, counted(name, wrapper))
    loss, grads, state, logits, arrays = train_step(cudacpu.NAME)
    assert {name for name, n in calls.items() if n == 0} == {"bn_stats", "adamw_update"}, calls  # SGD here
    assert all(type(a) is cudacpu.CudaCpuArray for a in arrays)
    assert_same_as_the_cpu(loss, grads, state, logits)


def assert_same_as_the_cpu(loss, grads, state, logits):
    """train_step's results on the device equal the CPU's (float64: to rounding)."""
    cpu_loss, cpu_grads, cpu_state, cpu_logits, _ = train_step("cpu")
    np.testing.assert_allclose(loss, cpu_loss, rtol=1e-12)
    for got, want in [(grads, cpu_grads), (state, cpu_state), ({"logits": logits}, {"logits": cpu_logits})]:
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12 * np.abs(want[k]).max(), err_msg=k)
