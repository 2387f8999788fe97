"""kernels.batched_matmul: OpenBLAS's strided batched GEMM against NumPy's matmul, the cases it
takes and the ones it leaves to matmul."""
import numpy as np
import pytest

from minires import kernels
from minires.kernels import gemm

fast, reference = gemm.batched_matmul.impls["numba"], gemm.batched_matmul.impls["numpy"]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def operand(rng, shape, dtype, layout):
    """A (B, R, C) array: C-contiguous, each matrix transposed in memory, or every other matrix of
    a longer stack (a batch stride that is not the matrix's size)."""
    if layout == "transposed":
        return rng.standard_normal((shape[0], shape[2], shape[1])).astype(dtype).swapaxes(1, 2)
    if layout == "strided":
        return rng.standard_normal((2 * shape[0],) + shape[1:]).astype(dtype)[::2]
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def calls(monkeypatch):
    """The BLAS calls the fast version makes (each still runs, so results are real)."""
    made, found = [], gemm._openblas_batched()
    if not found:
        pytest.fail("NumPy's OpenBLAS has no strided batched GEMM here; these tests need one")

    def spy(f):
        def call(*args):
            made.append(args[3:6])  # M, N, K
            return f(*args)
        return call
    monkeypatch.setattr(gemm, "_openblas_batched", lambda: {t: spy(f) for t, f in found.items()})
    return made


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layouts", [("c", "c"), ("transposed", "c"), ("c", "transposed"), ("strided", "transposed")])
@pytest.mark.parametrize("shape", [(36, 64, 64, 384), (3, 101, 99, 103), (36, 4, 8, 189), (1, 5, 0, 7)], ids=str)
def test_equals_matmul(shape, layouts, dtype, calls):
    rng = np.random.default_rng(0)
    nb, m, k, n = shape
    a, b = operand(rng, (nb, m, k), dtype, layouts[0]), operand(rng, (nb, k, n), dtype, layouts[1])
    got = fast(a, b, np.full((nb, m, n), np.nan, dtype))
    np.testing.assert_allclose(got, reference(a, b, np.empty((nb, m, n), dtype)), rtol=RTOL[dtype],
                               atol=RTOL[dtype] * np.sqrt(max(k, 1)))
    assert calls == ([(m, n, k)] if m * n * k > gemm.SMALL else [])  # small ones: matmul (OpenBLAS#5980)


def test_strides_blas_cannot_take_go_to_matmul(calls):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 128, 256)).astype(np.float32)[:, :, ::2]  # no unit stride in a matrix
    b = rng.standard_normal((4, 128, 100)).astype(np.float32)
    out = fast(a, b, np.empty((4, 128, 100), np.float32))
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    assert calls == []


def test_a_wrong_product_is_caught(monkeypatch):
    """The comparison can fail: a batch stride of 0 for B (every product takes b[0]) is caught."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 120, 110)), rng.standard_normal((2, 110, 130))
    f = gemm._openblas_batched()[np.float64]
    monkeypatch.setattr(gemm, "_openblas_batched", lambda: {np.float64: lambda *args: f(*args[:12], 0, *args[13:])})
    assert not np.allclose(fast(a, b, np.empty((2, 120, 130))), a @ b)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_out_is_one_line_error(backend):
    a, b = np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"batched_matmul: a float32 \(2, 3, 4\) and b float32 \(2, 4, 5\)"):
        gemm.batched_matmul.impls[backend](a, b, np.empty((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="C-contiguous out"):
        gemm.batched_matmul.impls[backend](a, b, np.empty((2, 5, 3), np.float32).swapaxes(1, 2))


def test_found_in_numpys_openblas():
    """NumPy's own OpenBLAS has it from 0.3.31 on: the fast version must then find it."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    version = tuple(int(p) for p in blas.get("version", "0").split(".")[:3] if p.isdigit())
    if "openblas" in blas["name"] and version >= (0, 3, 31):
        assert set(gemm._openblas_batched()) == {np.float32, np.float64}


def test_is_the_kernel_winograd_uses():
    assert kernels.batched_matmul is gemm.batched_matmul
