"""kernels/_parallel.py: chunks of a serial Numba body run on Numba's threads, the body called
through its address."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import get_num_threads, njit
from numba._dispatcher import compute_fingerprint

from minires.kernels import _parallel
from minires.kernels._parallel import parallel_chunks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@njit
def _returns_a_value(out, chunk, chunks):
    out[chunk] = 1
    return chunk


def test_a_body_must_return_none():
    # its value would be written where the call has no room for one
    with pytest.raises(TypeError, match="parallel_chunks: _returns_a_value returns int64, not None"):
        parallel_chunks(_returns_a_value, 2, np.zeros(2))


def test_an_exception_in_a_chunk_comes_out():
    with pytest.raises(ValueError, match="chunk two"):
        parallel_chunks(_fail_in_chunk_two, 4, np.zeros(4))


ONE_LOOP = """
import json
import numpy as np
from numba import njit
from minires.kernels import _parallel

@njit
def fill(out, value, chunk, chunks):
    out[chunk] = value

for out, value in ((np.zeros(4), 1.0), (np.zeros(4, np.float32), np.float32(1)), (np.zeros((4, 2)), np.ones(2))):
    _parallel.parallel_chunks(fill, 4, out, value)
print(json.dumps([len(_parallel._chunks_loop.signatures), len(_parallel._launch.signatures)]))
"""


def test_one_parallel_loop_serves_every_body_and_argument_types(tmp_path):
    # an empty cache of its own, so that everything compiles here: the parallel loop once, a launch
    # per argument types
    env = dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", ONE_LOOP], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [1, 3]


def test_the_body_is_not_compiled_into_the_code_that_runs_it():
    # the point of the module: the body is called through a pointer, so that its code is neither
    # typed nor linked nor optimized again with the loop's (a prange loop calling _count directly
    # would have a specialisation of _count in its code, under this prefix)
    out = np.zeros(8)
    parallel_chunks(_count, 2, out, 1.0)
    prefix = _count.overloads[_count.signatures[0]].fndesc.mangled_name.split("B")[0]
    assert prefix.endswith("test_parallel6_count")
    launch = njit(_parallel._launch.py_func)  # not cached: its code, and the loop's linked in, can be read
    launch(_parallel._addresses[_count, compute_fingerprint((out, 1.0))], 2, (out, 1.0))
    code = launch.inspect_llvm(launch.signatures[0])
    assert "_chunks_loop" in code and "minires_chunk_trampoline" in code and prefix not in code
    np.testing.assert_array_equal(out, [2, 2, 2, 2, 4, 4, 4, 4])
