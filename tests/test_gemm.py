"""kernels.batched_matmul: OpenBLAS's strided batched GEMM against NumPy's matmul, the cases it
takes and the ones it leaves to matmul."""
import sys

import numpy as np
import pytest

from minires.kernels import gemm, winograd

fast, reference = gemm.batched_matmul.impls["numba"], gemm.batched_matmul.impls["numpy"]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def operand(rng, shape, dtype, layout):
    """A (B, R, C) array: C-contiguous, each matrix transposed in memory, every other matrix of a
    longer stack (a batch stride that is not the matrix's size), or one matrix broadcast over B."""
    if layout == "transposed":
        return rng.standard_normal((shape[0], shape[2], shape[1])).astype(dtype).swapaxes(1, 2)
    if layout == "strided":
        return rng.standard_normal((2 * shape[0],) + shape[1:]).astype(dtype)[::2]
    if layout == "broadcast":  # one matrix for the whole stack: batch stride 0
        return np.broadcast_to(rng.standard_normal((1,) + shape[1:]).astype(dtype), shape)
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def calls(monkeypatch):
    """The BLAS calls the fast version makes (each still runs, so results are real)."""
    made, found = [], gemm._openblas_batched()
    if not found:
        pytest.skip("NumPy's OpenBLAS has no strided batched GEMM here (test_found_in_numpys_openblas says "
                    "where it must)")

    def spy(f):
        def call(*args):
            made.append(args[3:6])  # M, N, K
            return f(*args)
        return call
    monkeypatch.setattr(gemm, "_openblas_batched", lambda: {t: spy(f) for t, f in found.items()})
    return made


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layouts", [("c", "c"), ("transposed", "c"), ("c", "transposed"), ("transposed", "transposed"),
                                     ("strided", "transposed"), ("broadcast", "c")])
@pytest.mark.parametrize("shape", [(36, 64, 64, 384), (3, 101, 99, 103), (1, 128, 96, 120), (36, 4, 8, 189),
                                   (1, 5, 0, 7), (0, 128, 128, 128)], ids=str)
def test_equals_matmul(shape, layouts, dtype, calls):
    rng = np.random.default_rng(0)
    nb, m, k, n = shape
    a, b = operand(rng, (nb, m, k), dtype, layouts[0]), operand(rng, (nb, k, n), dtype, layouts[1])
    got = fast(a, b, np.full((nb, m, n), np.nan, dtype))
    np.testing.assert_allclose(got, reference(a, b, np.empty((nb, m, n), dtype)), rtol=RTOL[dtype],
                               atol=RTOL[dtype] * np.sqrt(max(k, 1)))
    assert calls == ([(m, n, k)] if nb and m * n * k > gemm.SMALL else [])  # small ones: matmul (OpenBLAS#5980)


def test_strides_blas_cannot_take_and_overlap_go_to_matmul(calls):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 128, 256)).astype(np.float32)[:, :, ::2]  # no unit stride in a matrix
    b = rng.standard_normal((4, 128, 100)).astype(np.float32)
    out = fast(a, b, np.empty((4, 128, 100), np.float32))
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    big = np.zeros((4, 128, 128), np.float32)  # out is b: matmul copies, BLAS would read what it wrote
    big[:] = np.eye(128, dtype=np.float32)
    a = rng.standard_normal((4, 128, 128)).astype(np.float32)
    np.testing.assert_allclose(fast(a, big, big), a, rtol=1e-6)
    swapped = rng.standard_normal((2, 110, 120)).astype(">f8"), rng.standard_normal((2, 120, 130)).astype(">f8")
    np.testing.assert_allclose(fast(*swapped, np.empty((2, 110, 130), ">f8")), swapped[0] @ swapped[1], rtol=1e-12)
    assert calls == []


def test_winograd_runs_its_gemms_as_one_batched_call(calls):
    """The forward's 36 products U @ V, the weight gradient's GY @ V^T and the input gradient's
    U^T @ GY (U of the swapped weight, read transposed), each one BLAS call."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((64, 64, 8, 8)).astype(np.float32), rng.standard_normal((80, 64, 3, 3)).astype(np.float32)
    v = np.empty((6, 6, 64, 64 * winograd.winograd_slots((8, 8))), np.float32)
    y = winograd.winograd_conv3x3(x, w, (1, 1), out=np.empty((80, 64, 8, 8), np.float32), v=v)
    winograd.winograd_weight_grad(y.transpose(1, 0, 2, 3), v)
    winograd.winograd_conv3x3(y.transpose(1, 0, 2, 3), w, (1, 1), out=np.empty((64, 64, 8, 8), np.float32), swapped=True)
    assert calls == [(80, 256, 64), (80, 64, 256), (64, 256, 80)]


def test_a_wrong_product_is_caught(monkeypatch):
    """The comparison can fail: a batch stride of 0 for B (every product takes b[0]) is caught."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 120, 110)), rng.standard_normal((2, 110, 130))
    f = gemm._openblas_batched()[np.float64]
    monkeypatch.setattr(gemm, "_openblas_batched", lambda: {np.float64: lambda *args: f(*args[:12], 0, *args[13:])})
    assert not np.allclose(fast(a, b, np.empty((2, 120, 130))), a @ b)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_input_is_one_line_error(backend):
    f = gemm.batched_matmul.impls[backend]
    a, b = np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"batched_matmul: a float32 \(2, 3, 4\) and b float32 \(2, 4, 5\)"):
        f(a, b, np.empty((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="writeable C-contiguous out"):
        f(a, b, np.empty((2, 5, 3), np.float32).swapaxes(1, 2))
    readonly = np.empty((2, 3, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable C-contiguous out"):
        f(a, b, readonly)
    for bad in ((a[0], b), (a, b[..., None]), (a, b[:, :3])):
        with pytest.raises(ValueError, match=r"batched_matmul: .* need stacks \(B, M, K\) and \(B, K, N\)"):
            f(*bad, np.empty((2, 3, 5), np.float32))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="found through /proc/self/maps: Linux only")
def test_found_in_numpys_openblas():
    """NumPy's own OpenBLAS has it from 0.3.31 on: the fast version must then find it."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    version = tuple(int(p) for p in blas.get("version", "0").split(".")[:3] if p.isdigit())
    if "openblas" in blas["name"] and version >= (0, 3, 31):
        assert set(gemm._openblas_batched()) == {np.float32, np.float64}
        assert gemm.available(np.float32) and gemm.available("float64") and not gemm.available(np.float16)
