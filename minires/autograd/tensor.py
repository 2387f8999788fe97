"""Tensor: an ndarray (NumPy or CuPy) plus the autograd graph that produced it, and backward().

The graph is a DAG of Function nodes: a tensor made by an op points to its node (``_node``), and the
node points to the op's input tensors. backward() sorts the nodes topologically with an explicit
stack (no recursion, so a ResNet-152 is no deeper for Python than a two-layer net), then walks them
from the output, handing each node the gradient of its output and accumulating what it returns.
"""
import collections
import heapq
import contextlib
import itertools
import sys
import weakref

import numpy as np

from .. import anomaly as _anomaly
from ..device import array_module, device_of, device_or_dtype, is_array

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Context manager: ops inside record no graph (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def as_array(data, dtype=None):
    """An ndarray for ``data``: arrays keep their dtype (and device); Python floats become float32
    and Python ints int64, as in PyTorch."""
    if isinstance(data, Tensor):
        data = data.data
    if is_array(data):
        return data if dtype is None or data.dtype == dtype else data.astype(dtype)
    arr = np.asarray(data, dtype=dtype)
    if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
        arr = arr.astype(np.float32)
    return arr


class Tensor:
    """An n-dimensional array that records the ops applied to it when requires_grad is set."""

    __slots__ = ("data", "grad", "requires_grad", "_node", "_post_accumulate_grad_hooks", "_grad_hooks", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False):
        self.data = as_array(data)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._post_accumulate_grad_hooks = None
        self._grad_hooks = None  # {handle id: hook} of register_hook and retain_grad, see _hooks_dict

    # --- array facts -------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: device_of(self.data).name)
    is_leaf = property(lambda self: self._node is None)

    def numel(self):
        return self.data.size

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.numpy(), prefix='tensor(')}, dtype={self.dtype}{extra})"

    def numpy(self):
        """A NumPy copy of the data, on the host."""
        return np.array(device_of(self.data).to_host(self.data))

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python scalar, got shape {self.shape}")
        return self.data.item()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) * grad into every leaf's .grad. grad defaults to 1 for a
        one-element tensor. The graph's saved arrays are freed afterwards unless retain_graph."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward: grad can be omitted only for a one-element output, got shape {self.shape}")
            grad = array_module(self.data).ones_like(self.data)
        else:
            grad = as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad of shape {grad.shape} does not match the output's shape {self.shape}")
        leaves = run_backward([self], [grad], retain_graph, leaf_done=_accumulate_grad)
        del grad  # a root gradient held here would look shared to _unshared
        while leaves:  # the leaves run_backward could not tell were done earlier
            _accumulate_grad(next(iter(leaves)), leaves)

    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(self) each time backward has accumulated this leaf's gradient into .grad, as
        soon as the gradient is complete (after the last op that uses the leaf has run its backward),
        while the rest of the backward pass is still to come: DistributedDataParallel starts
        reducing gradients there. Returns a handle whose remove() unregisters the hook."""
        if not self.is_leaf:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor accumulates a gradient")
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = {}
        return RemovableHandle(self._post_accumulate_grad_hooks, hook)

    # --- studying the graph: hooks and grad_fn, as PyTorch's ------------------------------------
    grad_fn = property(lambda self: self._node, doc="The node (a Function) that made this tensor; None for a leaf.")

    def register_hook(self, hook):
        """Call hook(grad) with this tensor's gradient in each backward, once it is complete (summed
        over every use); a Tensor it returns replaces the gradient. On a leaf it runs before the
        gradient is accumulated into .grad; on a tensor made by an op, before the gradient flows on
        into that op's backward. Hooks run in registration order. Returns a RemovableHandle."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
        return RemovableHandle(self._hooks_dict(), hook)

    def retain_grad(self):
        """Keep this tensor's gradient in .grad after backward (accumulated, as a leaf's), though an op
        made it; the gradient after every hook registered with register_hook, as PyTorch. A leaf
        keeps its gradient anyway: nothing to do."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad, so it gets no gradient")
        if self._node is not None and not self.retains_grad:
            RemovableHandle(self._hooks_dict(), _RetainGrad(self))

    retains_grad = property(lambda self: any(isinstance(h, _RetainGrad) for h in (self._grad_hooks or {}).values()),
                            doc="Whether retain_grad() was called on this non-leaf tensor.")

    def _hooks_dict(self):
        """This tensor's gradient hooks {handle id: hook}. A tensor made by an op shares the dict with
        the node that made it: the graph keeps edges to nodes, not tensors (see function._Edge), so
        the node is what backward reaches; a node has one output, so its hooks are that tensor's."""
        if self._grad_hooks is None:
            self._grad_hooks = {}
            if self._node is not None:
                self._node.grad_hooks = self._grad_hooks
        return self._grad_hooks

    # --- operators (the ops live in minires.ops; see the bottom of this file) -----------------
    def __add__(self, other): return _ew.add(self, other)
    def __radd__(self, other): return _ew.add(other, self)
    def __sub__(self, other): return _ew.sub(self, other)
    def __rsub__(self, other): return _ew.sub(other, self)
    def __mul__(self, other): return _ew.mul(self, other)
    def __rmul__(self, other): return _ew.mul(other, self)
    def __truediv__(self, other): return _ew.div(self, other)
    def __rtruediv__(self, other): return _ew.div(other, self)
    def __pow__(self, other): return _ew.pow(self, other)
    def __rpow__(self, other): return _ew.pow(other, self)
    def __matmul__(self, other): return _mm.matmul(self, other)
    def __rmatmul__(self, other): return _mm.matmul(other, self)
    def __neg__(self): return _ew.neg(self)
    def __getitem__(self, index): return _shape.getitem(self, index)

    def exp(self): return _ew.exp(self)
    def log(self): return _ew.log(self)
    def relu(self): return _ew.relu(self)
    def sum(self, axis=None, keepdims=False): return _reduce.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _reduce.mean(self, axis, keepdims)
    def reshape(self, *shape): return _shape.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    def transpose(self, *axes): return _shape.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)
    def flatten(self, start_dim=0, end_dim=-1): return _shape.flatten(self, start_dim, end_dim)
    def to(self, target):
        """A copy on device ``target`` ("cpu", "cuda", ...), or cast to dtype ``target``; self when
        it is already there (as PyTorch). Gradients flow back through either."""
        device, dtype = device_or_dtype(target, "Tensor.to")
        if device is not None:
            return self if self.device == device else _ew.ToDevice.apply(self, device)
        return _ew.cast(self, dtype)

    def cuda(self): return self.to("cuda")
    def cpu(self): return self.to("cpu")
    def float(self): return self.to(np.float32)
    def double(self): return self.to(np.float64)
    T = property(lambda self: self.transpose())

    def argmax(self, axis=None):
        """Indices of the maxima along ``axis`` (no gradient)."""
        return Tensor(self.data.argmax(axis=axis))


_handle_ids = itertools.count()


class RemovableHandle:
    """What the register_*hook methods return (PyTorch's torch.utils.hooks.RemovableHandle): remove()
    unregisters the hook, and so does leaving a ``with handle:`` block. Hooks live in dicts
    {handle id: hook}, which keep the registration order: the order they run in."""

    def __init__(self, hooks, hook):
        self.hooks, self.id = hooks, next(_handle_ids)
        hooks[self.id] = hook

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class _RetainGrad:
    """The hook retain_grad() registers: it adds the gradient into the tensor's .grad. It holds the
    tensor through a weak reference: the hook lives on the node, which must not keep its output alive."""

    def __init__(self, tensor):
        self.tensor = weakref.ref(tensor)

    def __call__(self, grad):
        t = self.tensor()
        if t is None:
            return
        if t.grad is None:
            t.grad = Tensor(array_module(grad.data).array(grad.data))  # a copy: g flows on into the graph
        else:
            t.grad.data += grad.data


def run_grad_hooks(hooks, g):
    """g (an array) passed through ``hooks``: each is given a Tensor and returns None or the gradient
    that replaces it. retain_grad's hook runs last, whenever it was registered, so that .grad is the
    gradient every other hook made (as PyTorch)."""
    for hook in sorted(tuple(hooks.values()), key=lambda h: isinstance(h, _RetainGrad)):
        new = hook(Tensor(g))
        if new is not None:
            g = replacement_grad(new, g, "register_hook")
    return g


def replacement_grad(new, g, who):
    """The array of ``new``, a Tensor or array that a hook returned to replace gradient g (an
    array), which must have g's shape and dtype. ``who``: the register method, for the error."""
    new = new.data if isinstance(new, Tensor) else new
    if new.shape != g.shape or new.dtype != g.dtype:
        raise RuntimeError(f"{who}: a hook returned a gradient of shape {new.shape} and dtype {new.dtype} "
                           f"for one of shape {g.shape} and dtype {g.dtype}")
    return new


def _accumulate_grad(leaf, leaves):
    """Move leaf's gradient out of ``leaves`` (a run_backward result), through the leaf's
    register_hook hooks, into leaf.grad, then run the leaf's post-accumulate-grad hooks. Popping it
    here leaves this frame the gradient's only holder."""
    g = leaves.pop(leaf)
    if leaf._grad_hooks:
        g = run_grad_hooks(leaf._grad_hooks, g)
    if leaf.grad is None:  # g itself when nothing else can see it (see _unshared), else a copy
        leaf.grad = Tensor(g if _unshared(g) else array_module(g).array(g))
    else:
        leaf.grad.data += g
    for hook in tuple((leaf._post_accumulate_grad_hooks or {}).values()):
        hook(leaf)


def _unshared(a):
    """Whether array a can become a leaf's .grad as it is, to be accumulated into in place later:
    a writeable array of its own (not a view), referenced only by the caller's variable (as
    PyTorch's AccumulateGrad steals a gradient nobody else holds). A gradient returned for two
    leaves, the caller's grad argument, or an array an op also keeps is copied. Saves a copy of
    every weight's gradient per step."""
    # + 1: this function's own parameter; CuPy arrays have no writeable flag (always writeable)
    return a.base is None and getattr(a.flags, "writeable", True) and _refcount(a) <= _REFS_UNSHARED + 1


def _summable_in_place(total, g):
    """Whether _send_gradients may add g into ``total``, a gradient sum held by its caller's variable
    and one dict: writeable, seen by nothing else (nor its memory: if a view, of an array that owns
    its memory and is held by the view alone), no two of its elements in one place, and not
    overlapping g. Then a gradient used twice (a residual block's input) costs no new array and one
    pass less over memory."""
    base = total.base
    # total: the caller's variable, + 2: this function's parameter and the dict; base: the local
    # variable, + 1: the view
    return (getattr(total.flags, "writeable", True) and _refcount(total) <= _REFS_UNSHARED + 2
            and (base is None or (base.base is None and _refcount(base) <= _REFS_UNSHARED + 1))
            and _elements_apart(total) and not array_module(total).may_share_memory(total, g))


def _elements_apart(a):
    """Whether no two elements of a share memory: taken by stride, smallest first, each axis steps
    over all the memory of the axes before it (a permuted, sliced or reshaped dense array does; a
    broadcast or as_strided view with a zero or short stride need not)."""
    span = a.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(a.strides, a.shape) if n > 1):
        if stride < span:
            return False
        span = stride * n
    return True


def _refcount(a):
    return sys.getrefcount(a)


def _calibrate():
    """_refcount of an array held by one local variable: interpreters count references differently."""
    g = np.empty(0)
    return _refcount(g)


_REFS_UNSHARED = _calibrate()


def run_backward(roots, grads, retain_graph=False, leaf_done=None):
    """Backpropagate ``grads`` (arrays) from ``roots`` through the graph; return {leaf: gradient}
    for every leaf tensor that requires grad. Nodes are released as they are done with unless
    retain_graph, so the saved arrays of the forward pass are freed during the backward pass.
    leaf_done(leaf, leaves), if given, is called as soon as leaf's gradient in the dict ``leaves``
    is complete (every use of the leaf has sent its gradient), and is expected to pop it; the dict
    returned then holds only the rest (a leaf among the roots, or one whose op returned None)."""
    order = _execution_order([t._node for t in roots if t._node is not None])
    uses_left = _leaf_uses(order) if leaf_done else None  # leaf -> gradients still to come
    pending = {}  # node -> gradient of its output, summed over its uses
    leaves = {}  # leaf tensor -> gradient
    for t, g in zip(roots, grads):
        if t._node is None:
            leaves[t] = g if t not in leaves else leaves[t] + g
        else:
            pending[t._node] = g if t._node not in pending else pending[t._node] + g
    for node in order:
        g = pending.pop(node, None)
        if g is None:
            continue
        if node.grad_hooks:  # its output tensor's register_hook and retain_grad
            g = run_grad_hooks(node.grad_hooks, g)
        reached = _send_gradients(node, g, pending, leaves)
        if not retain_graph:
            node.release()
        for t in reached if leaf_done else ():  # here, where no temporary holds a leaf's gradient
            uses_left[t] -= 1
            if not uses_left[t]:
                leaf_done(t, leaves)
    return leaves


def _send_gradients(node, g, pending, leaves):
    """Run node's backward on g, the gradient of its output, and add what it returns for each input
    to ``pending`` (inputs made by ops, by node) or ``leaves``; return the leaves reached, once per use."""
    reached, node_grads = [], node.run_backward(g)
    if _anomaly.enabled:
        _anomaly.check_backward(node, g, node_grads)
    for t, gi in zip(node.inputs, node_grads):
        if gi is None or t is None or not t.requires_grad:
            continue
        gi = array_module(gi).asarray(gi)
        if gi.shape != t.shape:
            raise RuntimeError(f"{type(node).__name__}.backward returned a gradient of shape {gi.shape} "
                               f"for an input of shape {t.shape}")
        if gi.dtype != t.dtype:  # an op that promoted mixed dtypes: each input gets its own dtype back, as torch
            gi = gi.astype(t.dtype)
        key, store = (t._node, pending) if t._node is not None else (t, leaves)
        total = store.get(key)
        if total is None:
            store[key] = gi
        elif _summable_in_place(total, gi):
            total += gi
        else:
            store[key] = total + gi
        if store is leaves:
            reached.append(t)
    return reached


def _leaf_uses(order):
    """Counter of leaf -> how many times the nodes in ``order`` take it as an input (with a gradient)."""
    return collections.Counter(t for node in order for t in node.inputs
                               if t is not None and t._node is None and t.requires_grad)


def _execution_order(roots):
    """Nodes reachable from ``roots`` in the order backward runs them, PyTorch's: a node is ready once
    every node that consumes its output has run, and of the ready nodes the one made last (highest
    ``seq``, numbered by Function.apply) runs first. So the branch made last (a block's main path,
    after its shortcut) goes first, and hooks fire in the order PyTorch fires them."""
    consumers = collections.Counter()  # node -> edges into it from reachable nodes, still to run
    seen, stack = set(roots), list(roots)
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(f"backward through a graph that was already freed ({type(node).__name__}); "
                               "pass retain_graph=True to the first backward to go through it twice")
        for child in _input_nodes(node):
            consumers[child] += 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    ready = [(-n.seq, n) for n in seen if not consumers[n]]
    heapq.heapify(ready)
    order = []
    while ready:
        node = heapq.heappop(ready)[1]
        order.append(node)
        for child in _input_nodes(node):
            consumers[child] -= 1
            if not consumers[child]:
                heapq.heappush(ready, (-child.seq, child))
    return order


def _input_nodes(node):
    """The nodes that made node's inputs, once per edge."""
    return [t._node for t in node.inputs if t is not None and t._node is not None]


# The ops build Tensors, so they are imported once Tensor exists.
from ..ops import elementwise as _ew, matmul as _mm, reduce as _reduce, shape as _shape  # noqa: E402
