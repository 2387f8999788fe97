"""minires.functional (import as F): the ops as functions, with PyTorch's names, arguments and
semantics, on NCHW tensors. Each lives in minires/ops/ beside its backward. The fused forms that
minires adds for speed live apart, in minires.fusion."""
from .ops.batchnorm import batch_norm
from .ops.conv import conv2d
from .ops.checks import tensor_arg
from .ops.elementwise import relu as _relu
from .ops.loss import cross_entropy, log_softmax
from .ops.matmul import linear
from .ops.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .ops.shape import pad

__all__ = ["conv2d", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "linear",
           "log_softmax", "cross_entropy", "pad"]


def relu(input):
    """max(input, 0) elementwise."""
    return _relu(tensor_arg("relu", "input", input))

