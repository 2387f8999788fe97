"""minires: a minimal define-by-run autograd engine that trains ResNets on NumPy (CPU) and CuPy (GPU).

    runtime.py   every process-wide setting            device.py    devices and their array modules
    blas_pool.py BLAS's jobs on the kernels' threads
    autograd/    Tensor, the graph, Function, gradcheck
    ops/         the ops, forward beside backward      functional   F: the ops with PyTorch's API
    plans/       convolution algorithms, and choose()  kernels/     array-in/array-out compute kernels
    nn/          Module and layers                     optim/       optimizers
    models/      ResNets in torchvision's layout       serialization  save/load (.npz files)
    summary, explain, graph, check, train, cli         tools and the ``minires`` command
"""
from . import runtime  # first of all: its settings must be made before NumPy loads OpenBLAS


def _kernels_from_a_checkout():
    """Installed, the top-level folder kernels/ is this package's sub-package minires.kernels
    (setup.py's package_dir). In a checkout (this package beside setup.py and kernels/: an editable
    install, or PYTHONPATH=. without installing) that folder is loaded under that name here."""
    import importlib.util
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    folder = os.path.join(root, "kernels")
    if os.path.isdir(os.path.join(here, "kernels")) or not os.path.isfile(os.path.join(root, "setup.py")):
        return  # an installed copy: minires/kernels is in the package
    if not os.path.isfile(os.path.join(folder, "__init__.py")):
        raise ImportError("minires.kernels is missing: install minires with `pip install -e .` from its checkout")
    spec = importlib.util.spec_from_file_location(__name__ + ".kernels", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_kernels_from_a_checkout()
from .autograd.tensor import Tensor, is_grad_enabled, no_grad  # noqa: E402  first: the ops import Tensor
from . import cuda, functional, kernels, models, nn, optim, plans  # noqa: E402
from .autograd.function import Function  # noqa: E402
from .autograd.gradcheck import GradcheckError, gradcheck  # noqa: E402
from .explain import explain  # noqa: E402
from .fusion import fuse  # noqa: E402
from .graph import graph  # noqa: E402
from .random import manual_seed  # noqa: E402
from .runtime import get_kernels, get_plans, get_winograd, set_kernels, set_plans, set_winograd  # noqa: E402
from .serialization import load, save  # noqa: E402
from .summary import summary  # noqa: E402
from .autograd.tensor import as_array as _as_array  # noqa: E402
from .autograd.function import check_dtype as _check_dtype  # noqa: E402
from .anomaly import AnomalyError, detect_anomaly  # noqa: E402
from .profiler import profile  # noqa: E402

__version__ = "0.1.0"


def tensor(data, dtype=None, requires_grad=False):
    """A new Tensor from data (copied). Python floats become float32 and ints int64, as PyTorch.
    Booleans, integers, float32 and float64 only: the dtypes the ops compute in."""
    try:
        arr = _as_array(data, dtype)
    except (TypeError, ValueError) as e:  # ragged lists, an unknown dtype
        raise type(e)(f"minires.tensor: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"minires.tensor: expected booleans, integers or floats, got {data!r:.60} (dtype {arr.dtype})")
    _check_dtype("minires.tensor", arr.dtype)
    return Tensor(arr.copy() if arr is data or (isinstance(data, Tensor) and arr is data.data) else arr, requires_grad)


__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "Function", "gradcheck", "GradcheckError",
           "cuda", "functional", "nn", "optim", "kernels", "set_kernels", "get_kernels", "set_winograd", "get_winograd",
           "set_plans", "get_plans", "manual_seed", "fuse", "explain", "graph",
           "models", "save", "load", "summary", "detect_anomaly", "AnomalyError", "profile"]
