"""Every op's forward and backward against PyTorch, over the cases of op_cases.CASES, on every CPU
kernel backend and with the reference convolution plan forced: the output, any state (batch norm's running statistics) and the gradient of every
differentiable input for a random upstream gradient, with relative error max|a - b| / max|b| at most
1e-10 in float64 and 1e-5 in float32.

Two references, both checked when PyTorch is installed: PyTorch itself, live, and the golden files
in tests/reference/ (written from PyTorch by make_reference.py), which run everywhere and are kept
honest by running them against minires too.
"""
import os

import numpy as np
import pytest

import minires
from op_cases import CASES, input_fingerprint, run_minires, run_torch
from reference.make_reference import DTYPES, golden_path

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
GOLDEN_MAX_BYTES = 1 << 20

case_params = pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
dtype_params = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


ENGINES = [(backend, "fast") for backend in minires.runtime.CPU_BACKENDS] + [("numpy", "reference")]


@pytest.fixture(params=ENGINES, ids=lambda e: "-".join(e))
def kernel_backend(request):
    """Runs the test once per CPU kernel implementation, and once as the plain version a student
    reads: NumPy kernels and every convolution the reference plan."""
    previous = minires.get_kernels(), minires.get_plans()
    minires.set_kernels(request.param[0]), minires.set_plans(request.param[1])
    yield request.param
    minires.set_kernels(previous[0]), minires.set_plans(previous[1])


def relative_error(actual, expected):
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual.astype(np.float64) - expected).max(initial=0.0)
    return diff / scale if scale > 0 else diff


def assert_matches(ours, reference, dtype, what):
    """ours and reference: {"out<k>" / "grad<i>": array} as op_cases.run_minires returns."""
    assert sorted(ours) == sorted(reference), f"{what}: minires gives {sorted(ours)}, the reference {sorted(reference)}"
    tolerance = TOLERANCE[np.dtype(dtype).name]
    for key, expected in reference.items():
        actual = ours[key]
        assert actual is not None, f"{what}: minires computed no gradient for {key}"
        assert (actual.shape, actual.dtype) == (expected.shape, expected.dtype), \
            f"{what} {key}: minires gives {actual.dtype} {actual.shape}, the reference {expected.dtype} {expected.shape}"
        error = relative_error(actual, expected)
        assert error <= tolerance, f"{what} {key}: relative error {error:.3g} exceeds {tolerance:g}"


@case_params
@dtype_params
def test_matches_torch(case, dtype, kernel_backend):
    pytest.importorskip("torch")
    assert_matches(run_minires(case, dtype), run_torch(case, dtype), dtype, f"{case.name} vs torch")


@pytest.fixture(scope="module")
def golden():
    """{dtype name: {case name: {key: array}}} from the committed golden files."""
    files = {}
    for dtype in DTYPES:
        with np.load(golden_path(dtype), allow_pickle=False) as data:
            cases = {}
            for name in data.files:
                if "/" in name:
                    case, key = name.split("/")
                    cases.setdefault(case, {})[key] = data[name]
            files[np.dtype(dtype).name] = cases
    return files


@case_params
@dtype_params
def test_matches_golden(case, dtype, golden, kernel_backend):
    reference = dict(golden[np.dtype(dtype).name].get(case.name, {}))
    assert reference, f"{case.name} is not in {golden_path(dtype)}: run python tests/reference/make_reference.py"
    fingerprint = reference.pop("inputs")
    assert np.isclose(input_fingerprint(case, dtype), fingerprint, rtol=1e-12, atol=0), \
        f"{case.name}: the inputs drawn from the seed differ from the golden file's (NumPy's random stream changed?)"
    assert_matches(run_minires(case, dtype), reference, dtype, f"{case.name} vs golden file")


def test_golden_files_hold_exactly_the_cases(golden):
    names = {case.name for case in CASES}
    for dtype, cases in golden.items():
        stale, missing = sorted(set(cases) - names), sorted(names - set(cases))
        assert not stale and not missing, (f"golden file for {dtype} is out of date (stale {stale}, missing {missing}): "
                                           "run python tests/reference/make_reference.py")
    size = sum(os.path.getsize(golden_path(dtype)) for dtype in DTYPES)
    assert size < GOLDEN_MAX_BYTES, f"golden files take {size} bytes: shrink the cases' shapes"
