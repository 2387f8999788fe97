"""kernels/_parallel.py: chunks of a serial Numba body run on Numba's threads, the body called
through its address."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import get_num_threads, get_thread_id, njit
from numba._dispatcher import compute_fingerprint

from minires.kernels import _parallel
from minires.kernels._parallel import chunk_count, chunk_range, parallel_chunks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@njit
def _count(out, scale, chunk, chunks):
    lo, hi = chunk_range(out.size, chunk, chunks)
    for i in range(lo, hi):
        out[i] += scale * (chunk + 1)


@njit
def _add_one(out, chunk, chunks):
    lo, hi = chunk_range(out.size, chunk, chunks)
    for i in range(lo, hi):
        out[i] += 1


@njit
def _thread_of_chunk(out, chunk, chunks):
    out[chunk] = get_thread_id()


@njit
def _fail_in_chunk_two(out, chunk, chunks):
    if chunk == 2:
        raise ValueError("chunk two")
    out[chunk] += 1


@njit
def _fail_off_the_main_thread(out, chunk, chunks):
    if get_thread_id() != 0:
        raise ValueError("not on the main thread")
    out[chunk] = 1


@njit
def _returns_a_value(out, chunk, chunks):
    out[chunk] = 1
    return chunk


@pytest.mark.parametrize("n, chunks", [(10, 1), (10, 3), (10, 10), (3, 8), (0, 2), (7, 7)])
def test_chunk_range_cuts_range_n_in_order_and_evenly(n, chunks):
    parts = [chunk_range(n, c, chunks) for c in range(chunks)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_chunk_count_is_one_per_thread_at_most_one_per_unit():
    assert chunk_count(1000) == get_num_threads()
    assert chunk_count(1) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [1, 3, 4 * get_num_threads() + 1])
def test_every_chunk_runs_once_over_its_part(dtype, chunks):
    out = np.zeros(50, dtype)
    parallel_chunks(_count, chunks, out, dtype(2))
    expected = np.concatenate([np.full(((c + 1) * 50 // chunks) - c * 50 // chunks, 2 * (c + 1))
                               for c in range(chunks)])
    np.testing.assert_array_equal(out, expected)


def test_no_chunks_runs_nothing():
    out = np.zeros(4)
    parallel_chunks(_add_one, 0, out)
    assert not out.any()


@pytest.mark.skipif(get_num_threads() < 2, reason="one thread")
def test_the_chunks_run_on_every_thread():
    threads = np.full(get_num_threads(), -1, np.int64)
    parallel_chunks(_thread_of_chunk, len(threads), threads)
    assert sorted(threads) == list(range(get_num_threads()))


def test_each_argument_type_has_its_compiled_body():
    for dtype in (np.float64, np.float32, np.float64):
        out = np.zeros(8, dtype)
        parallel_chunks(_add_one, 2, out)
        np.testing.assert_array_equal(out, np.ones(8))
    layouts = np.zeros((8, 2))[:, 0], np.zeros(8)  # a strided array and a contiguous one
    for out in layouts:
        parallel_chunks(_add_one, 2, out)
        np.testing.assert_array_equal(out, np.ones(8))
    assert len(_add_one.signatures) == 3


def test_a_body_must_return_none():
    # its value would be written where the call has no room for one
    with pytest.raises(TypeError, match="parallel_chunks: _returns_a_value returns int64, not None"):
        parallel_chunks(_returns_a_value, 2, np.zeros(2))


def test_an_exception_in_a_chunk_comes_out_and_only_that_chunk_runs_again():
    out = np.zeros(4)
    with pytest.raises(ValueError, match="chunk two"):
        parallel_chunks(_fail_in_chunk_two, 4, out)
    np.testing.assert_array_equal(out, [1, 1, 0, 1])


@pytest.mark.skipif(get_num_threads() < 2, reason="one thread")
def test_a_chunk_that_raised_only_in_the_parallel_loop_is_an_error():
    with pytest.raises(RuntimeError, match="_fail_off_the_main_thread raised in the parallel loop but not when"):
        parallel_chunks(_fail_off_the_main_thread, get_num_threads(), np.zeros(get_num_threads()))


ONE_LOOP = """
import json
import numpy as np
from numba import njit
from minires.kernels import _parallel

@njit
def fill(out, value, chunk, chunks):
    out[chunk] = value

filled = []
for out, value in ((np.zeros(4), 1.0), (np.zeros(4, np.float32), np.float32(2)), (np.zeros((4, 2)), np.full(2, 3.0))):
    _parallel.parallel_chunks(fill, 4, out, value)
    filled.append(out.tolist())
print(json.dumps([len(_parallel._chunks_loop.signatures), len(_parallel._launch.signatures),
                  sum(_parallel._launch.stats.cache_hits.values()), filled]))
"""


def test_one_parallel_loop_serves_every_body_and_argument_types(tmp_path):
    # an empty cache of its own, so that everything compiles here: the parallel loop once, a launch
    # per argument types; then a second process loads the launches from that cache (the addresses
    # they call are found again in each process)
    env = dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=str(tmp_path))
    filled = [[1.0] * 4, [2.0] * 4, [[3.0, 3.0]] * 4]
    for compiled, loaded in ((1, 0), (0, 3)):
        out = subprocess.run([sys.executable, "-c", ONE_LOOP], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[-1]) == [compiled, 3, loaded, filled]


def test_the_body_is_not_compiled_into_the_code_that_runs_it():
    # the point of the module: the body is called through a pointer, so that its code is neither
    # typed nor linked nor optimized again with the loop's (a prange loop calling _count directly
    # would have a specialisation of _count in its code, under this prefix)
    out = np.zeros(8)
    parallel_chunks(_count, 2, out, 1.0)
    prefix = _count.overloads[_count.signatures[0]].fndesc.mangled_name.split("B")[0]
    assert prefix.endswith("test_parallel6_count")
    launch = njit(_parallel._launch.py_func)  # not cached: its code, and the loop's linked in, can be read
    launch(_parallel._addresses[_count, compute_fingerprint((out, 1.0))], np.zeros(2, np.bool_), (out, 1.0))
    code = launch.inspect_llvm(launch.signatures[0])
    assert "_chunks_loop" in code and "minires_chunk_trampoline" in code and prefix not in code
    np.testing.assert_array_equal(out, [2, 2, 2, 2, 4, 4, 4, 4])
