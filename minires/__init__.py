"""minires: a minimal define-by-run autograd engine that trains ResNets on NumPy (CPU) and CuPy (GPU).

    tensor.py    Tensor, the graph and backward()      function.py  Function, the base of every op
    ops/         the ops, forward beside backward      functional   F: the ops with PyTorch's API
    kernels/     array-in/array-out compute kernels    nn/          Module and layers
    optim/       optimizers                            gradcheck    numerical gradient checks
    models/      ResNets in torchvision's layout       serialization  save/load (.npz files)
    summary      layers, parameters and MACs
"""
from . import _openblas  # noqa: F401  first of all: before NumPy loads OpenBLAS
from .tensor import Tensor, is_grad_enabled, no_grad  # first: the ops import Tensor
from . import functional, kernels, models, nn, optim  # noqa: E402
from .function import Function  # noqa: E402
from .gradcheck import GradcheckError, gradcheck  # noqa: E402
from .kernels import get_kernels, set_kernels  # noqa: E402
from .ops.conv import get_winograd, set_winograd  # noqa: E402
from .random import manual_seed  # noqa: E402
from .serialization import load, save  # noqa: E402
from .summary import summary  # noqa: E402
from .tensor import as_array as _as_array  # noqa: E402

__version__ = "0.1.0"


def tensor(data, dtype=None, requires_grad=False):
    """A new Tensor from data (copied). Python floats become float32 and ints int64, as PyTorch."""
    arr = _as_array(data, dtype)
    return Tensor(arr.copy() if arr is data or (isinstance(data, Tensor) and arr is data.data) else arr, requires_grad)


__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "Function", "gradcheck", "GradcheckError",
           "functional", "nn", "optim", "kernels", "set_kernels", "get_kernels", "set_winograd", "get_winograd", "manual_seed",
           "models", "save", "load", "summary"]
