"""Function: the base class of every op, and of user-defined ops, as torch.autograd.Function.

A subclass gives two static methods over plain arrays:
    forward(ctx, *args) -> array            args: the arrays of Tensor arguments, other values as given
    backward(ctx, grad) -> one gradient per forward argument (None where there is none)
``Op.apply(*args)`` runs forward and, when a gradient is needed, records the call in the graph. The
``ctx`` is the graph node itself: forward stores on it whatever backward needs.
"""
import itertools

import numpy as np

from .. import anomaly as _anomaly
from .. import profiler as _profiler
from . import tensor as _tensor
from .tensor import Tensor

_sequence = itertools.count()
SUPPORTED_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # the kernels' floats, under every backend


class Function:
    # per argument while the node is in a graph: a leaf Tensor itself (its .grad is accumulated into),
    # an _Edge for a tensor made by an op, None for anything else
    inputs = None
    grad_hooks = None  # {handle id: hook} of the output tensor's register_hook (see Tensor._hooks_dict)

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        ctx = cls()
        # False throughout under no_grad: forward can skip what only a backward would use
        grad_enabled = _tensor.is_grad_enabled()
        ctx.needs_input_grad = tuple(grad_enabled and isinstance(a, Tensor) and a.requires_grad for a in args)
        _check_same_device(cls.__name__, args)
        arrays = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        _check_dtypes(cls.__name__, arrays)
        out = cls.forward(ctx, *arrays) if _profiler.active is None else _profiler.active.forward(cls, ctx, arrays)
        _check_dtypes(cls.__name__, (out,))  # a cast
        if _anomaly.enabled:
            _anomaly.check_forward(ctx, arrays, out)
        result = Tensor(out, requires_grad=any(ctx.needs_input_grad) and _is_float(out))
        if result.requires_grad:
            ctx.inputs = tuple(_edge(a) for a in args)
            ctx.seq = next(_sequence)  # creation order: backward runs the ready node made last first
            result._node = ctx
        return result  # without a graph, ctx (and what forward saved on it) is dropped here

    def save_for_backward(self, *arrays):
        self._saved = arrays

    @property
    def saved_tensors(self):
        return self._saved

    def run_backward(self, grad):
        grads = type(self).backward(self, grad) if _profiler.active is None else _profiler.active.backward(self, grad)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(self.inputs):
            raise RuntimeError(f"{type(self).__name__}.backward returned {len(grads)} gradients "
                               f"for {len(self.inputs)} forward arguments")
        return grads

    def release(self):
        """Drop the inputs and everything forward saved: the graph below is freed."""
        self.__dict__.clear()
        self.inputs = None

    # --- the node as PyTorch's grad_fn, for studying a graph ------------------------------------
    def name(self):
        """The op's class name + "Backward" (Conv2dBackward, AddBackward): minires's ops, which are
        not PyTorch's one for one, so not PyTorch's names (ConvolutionBackward0)."""
        return type(self).__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    @property
    def next_functions(self):
        """((node, 0), ...), one per Tensor argument, as PyTorch: the node that made it, an
        AccumulateGrad for a leaf that requires grad, None for one that does not (0: which output
        of that node; a minires node has one). Empty once backward has freed the graph."""
        return tuple((_next_function(t), 0) for t in self.inputs or () if t is not None)

    @property
    def metadata(self):
        """A dict for the user's own notes on this node, as PyTorch's grad_fn.metadata."""
        return self.__dict__.setdefault("_metadata", {})


class AccumulateGrad:
    """Where the graph ends at a leaf that requires grad (PyTorch's AccumulateGrad node): backward
    adds the gradient into variable.grad. Made when next_functions is read; two for the same leaf
    are equal."""
    __slots__ = ("variable",)
    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    __repr__ = Function.__repr__

    def __eq__(self, other):
        return isinstance(other, AccumulateGrad) and other.variable is self.variable

    def __hash__(self):
        return id(self.variable)


def _next_function(t):
    """next_functions' node for an input t (a leaf Tensor or an _Edge)."""
    if t._node is not None:
        return t._node
    return AccumulateGrad(t) if t.requires_grad else None


class _Edge:
    """What the graph keeps of an input made by another op: that op's node, and the shape and dtype
    its gradient must have; not the input's data, which lives on only if some node saved it (as in
    PyTorch, whose graph points to the producing function, not to the tensor). Holding the Tensor
    kept every activation alive until the backward, saved or not."""
    __slots__ = ("_node", "requires_grad", "shape", "dtype")

    def __init__(self, t):
        self._node, self.requires_grad, self.shape, self.dtype = t._node, t.requires_grad, t.shape, t.dtype


def _edge(a):
    if not isinstance(a, Tensor):
        return None
    return a if a._node is None else _Edge(a)


def _is_float(a):
    return a.dtype.kind == "f"


def check_dtype(name, dtype):
    """Refuse floating-point dtypes other than float32 and float64 (float16, longdouble): no kernel
    backend has versions for them, and Numba's fail deep inside. ``name``: who refuses."""
    if dtype.kind == "f" and dtype not in SUPPORTED_FLOATS:
        raise TypeError(f"{name}: dtype {dtype} is not supported: minires computes in float32 or float64")


def _check_dtypes(name, values):
    for v in values:
        dtype = getattr(v, "dtype", None)  # arrays and NumPy scalars
        if dtype is not None and dtype not in SUPPORTED_FLOATS and isinstance(dtype, np.dtype):
            check_dtype(name, dtype)


def _check_same_device(name, args):
    devices = {a.device for a in args if isinstance(a, Tensor)}
    if len(devices) > 1:
        raise ValueError(f"{name}: all tensors must be on one device, got {sorted(devices)}")
