"""minires.functional (import as F): the ops as functions, with PyTorch's names, arguments and
semantics, on NCHW tensors. Each lives in minires/ops/ beside its backward. Two fusions are
minires extensions for speed: batch_norm(..., relu=True, residual=r), relu(batch_norm(...) + r) in
one op, and add_relu(a, b)."""
from .ops.batchnorm import batch_norm
from .ops.conv import conv2d
from .ops.checks import same_dtype, tensor_arg
from .ops.elementwise import add_relu as _add_relu
from .ops.elementwise import relu as _relu
from .ops.loss import cross_entropy, log_softmax
from .ops.matmul import linear
from .ops.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d

__all__ = ["conv2d", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "add_relu", "linear",
           "log_softmax", "cross_entropy"]


def relu(input):
    """max(input, 0) elementwise."""
    return _relu(tensor_arg("relu", "input", input))


def add_relu(a, b):
    """relu(a + b) as one op, for a residual block's output: a and b of one shape and dtype. A minires
    extension: one graph node instead of an add's and a relu's, the sum clamped in place."""
    op = "add_relu"
    a, b = tensor_arg(op, "a", a), tensor_arg(op, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"{op}: the shapes of a and b must be equal, got {a.shape} and {b.shape}")
    same_dtype(op, a=a, b=b)
    return _add_relu(a, b)
