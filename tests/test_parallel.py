"""kernels/_parallel.py: chunks of a serial Numba body run on Numba's threads, the body called
through its address."""
import numpy as np
import pytest
from numba import get_num_threads, njit

from minires.kernels import _parallel
from minires.kernels._parallel import parallel_chunks


@njit
def _count(out, scale, chunk, chunks):
    for i in range(chunk * out.size // chunks, (chunk + 1) * out.size // chunks):
        out[i] += scale * (chunk + 1)


@njit
def _fail_in_chunk_two(out, chunk, chunks):
    if chunk == 2:
        raise ValueError("chunk two")
    out[chunk] = 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [1, 3, 4 * get_num_threads() + 1])
def test_every_chunk_runs_once_over_its_part(dtype, chunks):
    out = np.zeros(50, dtype)
    parallel_chunks(_count, chunks, out, dtype(2))
    expected = np.concatenate([np.full(((c + 1) * 50 // chunks) - c * 50 // chunks, 2 * (c + 1))
                               for c in range(chunks)])
    np.testing.assert_array_equal(out, expected)


def test_each_argument_type_has_its_compiled_body():
    for dtype in (np.float64, np.float32, np.float64):
        out = np.zeros(8, dtype)
        parallel_chunks(_count, 2, out, dtype(1))
        np.testing.assert_array_equal(out, [1, 1, 1, 1, 2, 2, 2, 2])
    assert len(_count.signatures) == 2


def test_an_exception_in_a_chunk_comes_out():
    with pytest.raises(ValueError, match="chunk two"):
        parallel_chunks(_fail_in_chunk_two, 4, np.zeros(4))


def test_the_loop_does_not_compile_the_body_in():
    # the point of the module: the parallel loop's code calls the body through a pointer, so the
    # body's code is neither typed nor linked nor optimized again with the loop's (a prange loop
    # calling _count directly has a specialisation of _count in its code, under this prefix)
    out = np.zeros(8)
    parallel_chunks(_count, 2, out, 1.0)
    prefix = _count.overloads[_count.signatures[0]].fndesc.mangled_name.split("B")[0]
    assert prefix.endswith("test_parallel6_count")
    loop = njit(parallel=True)(_parallel._chunks_loop.py_func)  # not cached: its code can be read
    address = next(a for (f, _), a in _parallel._addresses.items() if f is _count)
    loop(address, 2, (out, 1.0))
    code = loop.inspect_llvm(loop.signatures[0])
    assert "_chunks_loop" in code and prefix not in code
