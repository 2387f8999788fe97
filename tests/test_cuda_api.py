"""minires.cuda on a machine without a GPU (CI's): what it says, and that everything the GPU path
asks of CuPy exists in the installed CuPy (which imports without a GPU)."""
import os
import re

import numpy as np
import pytest

import minires

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cupy = pytest.importorskip("cupy", reason="CuPy is part of the test extra: pip install -e '.[test]'")
no_gpu = pytest.mark.skipif(minires.cuda.is_available(), reason="this machine has a GPU")


@no_gpu
def test_without_a_gpu_cuda_is_unavailable_and_to_cuda_says_so_in_one_line():
    assert minires.cuda.is_available() is False and minires.cuda.device_count() == 0
    for move in (lambda: minires.tensor(np.ones(3)).to("cuda"), lambda: minires.nn.Linear(2, 3).to("cuda"),
                 lambda: minires.tensor(np.ones(3)).cuda()):
        with pytest.raises(RuntimeError) as info:
            move()
        assert str(info.value) == "device 'cuda': CuPy found no CUDA GPU on this machine"


def test_set_tf32_checks_its_argument():
    with pytest.raises(TypeError, match="set_tf32: expected True or False"):
        minires.cuda.set_tf32(1)
    assert minires.cuda.get_tf32() is False  # the default: float32 GEMMs round as on the CPU


def _sources(*folders):
    for folder in folders:
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(base, name)) as f:
                        yield os.path.relpath(os.path.join(base, name), ROOT), f.read()


# CuPy modules that need a library beside CuPy's wheel (NCCL, for minires.distributed on GPUs): not
# there without it, so not checked here.
OPTIONAL = ("cupy.cuda.nccl",)


def test_every_cupy_name_the_gpu_path_uses_exists():
    """cupy.X.Y and cupyx.X written in minires's GPU code, and xp.X in the array-module generic code that
    runs on CuPy arrays there: each must resolve in the installed CuPy. A typo or an API CuPy lacks
    (CuPy 14 has no cupy.cudnn, for one) fails here, not first on a GPU."""
    import cupyx
    missing = []
    for path, text in _sources("minires", "kernels", "benchmarks"):
        names = set(re.findall(r"\b(cupyx?)((?:\.[A-Za-z_]\w*)+)", text))
        names |= {("cupy", name) for name in re.findall(r"\bxp((?:\.[A-Za-z_]\w*)+)", text)} - {("cupy", ".__name__")}
        for module, name in names:
            if (module + name).startswith(OPTIONAL):
                continue
            obj = cupyx if module == "cupyx" else cupy
            for part in name.strip(".").split("."):
                if not hasattr(obj, part):
                    missing.append(f"{path}: {module}{name}")
                    break
                obj = getattr(obj, part)
    assert not missing, missing


def test_the_stream_copier_calls_what_cupy_has():
    """minires.cuda.StreamCopier's calls on CuPy's objects (streams, events, arrays), which the scan
    above cannot see: a GPU is needed to make the objects, not to look at their classes."""
    import inspect
    stream, event = cupy.cuda.Stream, cupy.cuda.Event
    assert all(hasattr(stream, m) for m in ("wait_event", "record")) and hasattr(event, "synchronize")
    assert "non_blocking" in inspect.signature(stream).parameters
    assert "stream=" in cupy.ndarray.set.__doc__.splitlines()[0]  # a Cython method: its signature is its doc's first line


def test_the_check_finds_a_bad_name(tmp_path, monkeypatch):
    """The scan above can fail: a made-up name is reported."""
    fake = tmp_path / "minires"
    fake.mkdir()
    (fake / "gpu.py").write_text("import cupy\ncupy.cuda.not_a_thing()\nxp.no_such_function(a)\ncupyx.no_pinned()\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    with pytest.raises(AssertionError) as info:
        test_every_cupy_name_the_gpu_path_uses_exists()
    assert all(name in str(info.value) for name in ("cupy.cuda.not_a_thing", "cupy.no_such_function", "cupyx.no_pinned"))
