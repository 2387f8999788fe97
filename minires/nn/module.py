"""Module: the base of every layer and model, with PyTorch's bookkeeping of parameters, buffers and
sub-modules, so state_dict() keys and their order match PyTorch's (a module's own parameters, then
its own buffers, then each child's in the order they were assigned)."""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import anomaly as _anomaly
from .. import profiler as _profiler
from ..autograd.function import Function, check_dtype
from ..device import array_module, device_or_dtype, to_device
from ..autograd.tensor import RemovableHandle, Tensor, is_grad_enabled, replacement_grad

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (requires_grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_hooks", {})  # {handle id: (kind, hook)}, in registration order

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        if self._hooks:  # the one test hooks cost a module without any: __call__ is on the hot path
            return _call_with_hooks(self, args, kwargs)
        if _anomaly.enabled or _profiler.active is not None:  # keep the stack of modules that errors and profiles name
            return _anomaly.call_module(self, args, kwargs)
        return self.forward(*args, **kwargs)

    # --- hooks (PyTorch's), to watch or change what flows through a module --------------------
    def register_forward_pre_hook(self, hook):
        """Call hook(module, args) before each forward; a value it returns replaces the positional
        arguments (a non-tuple is made a 1-tuple). Returns a RemovableHandle."""
        return RemovableHandle(self._hooks, ("forward_pre", hook))

    def register_forward_hook(self, hook):
        """Call hook(module, args, output) after each forward; a value it returns replaces the output.
        Returns a RemovableHandle."""
        return RemovableHandle(self._hooks, ("forward", hook))

    def register_full_backward_hook(self, hook):
        """Call hook(module, grad_input, grad_output) in backward, once the gradient with respect to
        the module's input is computed. grad_input has an entry per positional argument of the call
        (None for a non-Tensor or a tensor without a gradient), grad_output one for the output; a
        tuple the hook returns replaces grad_input. For modules called with at most one tensor that
        requires grad, returning one Tensor (every layer of a ResNet). Returns a RemovableHandle."""
        return RemovableHandle(self._hooks, ("backward", hook))

    # --- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, (Parameter, Module)):
            for d in (params, buffers, modules, self.__dict__):
                d.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "a Parameter" if name in params else "a Module"
                raise TypeError(f"cannot assign {type(value).__name__} to {name!r}: {kind} or None is required")
            (params if name in params else modules)[name] = None
        elif name in buffers:
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """A non-learnable tensor that belongs to the state (e.g. running statistics); None allowed."""
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor

    def register_parameter(self, name, param):
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name, module):
        self._modules[name] = module

    # --- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        """(qualified name, module) for this module and every descendant, depth first."""
        stack, seen = [(prefix, self)], set()
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack.extend(reversed([(f"{name}.{k}" if name else k, c) for k, c in m._modules.items() if c is not None]))

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_children(self):
        return ((k, m) for k, m in self._modules.items() if m is not None)

    def _named(self, store, recurse=True):
        seen = set()
        for prefix, m in self.named_modules() if recurse else [("", self)]:
            for k, t in getattr(m, store).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{prefix}.{k}" if prefix else k), t

    def named_parameters(self, recurse=True):
        return self._named("_parameters", recurse)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse=True):
        return self._named("_buffers", recurse)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse))

    # --- state -------------------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict of qualified name -> Tensor (sharing the data), parameters and buffers, in
        PyTorch's order."""
        out = OrderedDict()
        for prefix, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for k, t in store.items():
                    if t is not None:
                        out[f"{prefix}.{k}" if prefix else k] = t.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values (Tensors, NumPy arrays or anything numpy.asarray takes) into the parameters
        and buffers, cast to their dtype. All keys are checked before anything is written: missing,
        unexpected (when strict) and shape-mismatched keys are reported together in one ValueError,
        and the module is left unchanged."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, mismatched = {}, []
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                v = v.data if isinstance(v, Tensor) else v
                v = v if hasattr(v, "shape") and hasattr(v, "dtype") else np.asarray(v)
                if tuple(v.shape) != t.shape:
                    mismatched.append(f"{k}: expected shape {t.shape}, got {tuple(v.shape)}")
                values[k] = v
        problems = ([f"missing keys: {missing}"] if strict and missing else []) + \
                   ([f"unexpected keys: {unexpected}"] if strict and unexpected else []) + \
                   ([f"shape mismatches: {mismatched}"] if mismatched else [])
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for k, v in values.items():
            data = own[k].data
            data[...] = array_module(data).asarray(v if isinstance(v, type(data)) else np.asarray(v)).astype(data.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # --- modes, gradients, placement -----------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def to(self, target):
        """Move to a device ("cpu", "cuda", or one registered) or cast floating-point parameters and
        buffers to a dtype, in place (the Parameter objects stay the same, so an optimizer made before
        still holds them)."""
        device, dtype = device_or_dtype(target, "Module.to")
        dtype = None if device else _float_dtype(dtype)
        for t in list(self.parameters()) + list(self.buffers()):
            if device:
                t.data = to_device(t.data, device)
                if t.grad is not None:
                    t.grad.data = to_device(t.grad.data, device)
            elif t.dtype.kind == "f":
                t.data = t.data.astype(dtype)
                t.grad = None
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def apply(self, fn):
        for m in list(self.modules())[::-1]:
            fn(m)
        return self

    # --- printing ----------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n  " + "\n  ".join(lines) + "\n" if lines else "") + ")"


def _call_with_hooks(module, args, kwargs):
    """Module.__call__ with hooks, in PyTorch's order: the forward pre-hooks, forward, the forward
    hooks. For full backward hooks the tensor argument and the output pass through identity ops
    (_BackwardHookState) whose backward calls them."""
    hooks = tuple(module._hooks.values())  # a hook registered during this call runs from the next one
    for kind, hook in hooks:
        if kind == "forward_pre":
            new = hook(module, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
    backward = [hook for kind, hook in hooks if kind == "backward"]
    state = _BackwardHookState(module, backward, args) if backward and is_grad_enabled() else None
    args = state.wrap_input(args) if state else args  # the forward hooks get these too, as PyTorch's
    tracked = _anomaly.enabled or _profiler.active is not None
    out = _anomaly.call_module(module, args, kwargs) if tracked else module.forward(*args, **kwargs)
    for kind, hook in hooks:
        if kind == "forward":
            new = hook(module, args, out)
            if new is not None:
                out = new
    return state.wrap_output(out) if state else out


class _Identity(Function):
    """y = x, whose backward hands the gradient to ``then`` and passes on what it returns: how a
    module's full backward hooks see the gradients at its boundary (PyTorch's BackwardHookFunction)."""

    @staticmethod
    def forward(ctx, x, then):
        ctx.then = then
        return x

    @staticmethod
    def backward(ctx, g):
        return ctx.then(g), None


class _BackwardHookState:
    """One call of a module that has full backward hooks. Its output passes through an _Identity
    whose backward runs first and notes grad_output; its input through one whose backward runs once
    the gradient w.r.t. the input is complete (every op in the module has sent its part): it calls
    the hooks there, and passes on the grad_input they return."""

    def __init__(self, module, hooks, args):
        self.module, self.hooks, self.n_args, self.grad_output = module, hooks, len(args), None
        wanted = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if len(wanted) > 1:
            raise ValueError(f"register_full_backward_hook: {type(module).__name__} was called with {len(wanted)} "
                             "tensors that require grad; minires's backward hooks take modules with one")
        self.index = wanted[0] if wanted else None  # the argument whose gradient is grad_input's

    def wrap_input(self, args):
        if self.index is None:
            return args
        return args[:self.index] + (_Identity.apply(args[self.index], self._input_grad),) + args[self.index + 1:]

    def wrap_output(self, out):
        if not isinstance(out, Tensor):
            raise TypeError(f"register_full_backward_hook: {type(self.module).__name__} returned "
                            f"{type(out).__name__}; minires's backward hooks take modules that return one Tensor")
        return _Identity.apply(out, self._output_grad) if out.requires_grad else out

    def _output_grad(self, g):
        self.grad_output = (Tensor(g),)
        if self.index is None:  # no input wants a gradient: no input op will run, so call the hooks now
            if any(x is not None for x in self._call_hooks((None,) * self.n_args)):
                raise RuntimeError(f"register_full_backward_hook: a hook of {type(self.module).__name__}, whose "
                                   "inputs require no grad, returned a grad_input")
        return g

    def _input_grad(self, g):
        if self.grad_output is None:  # the gradient did not come through the module's output
            return g
        grad_input = self._call_hooks(tuple(Tensor(g) if i == self.index else None for i in range(self.n_args)))
        new = grad_input[self.index]
        return None if new is None else replacement_grad(new, g, "register_full_backward_hook")

    def _call_hooks(self, grad_input):
        for hook in self.hooks:
            new = hook(self.module, grad_input, self.grad_output)
            if new is not None:
                if len(new) != len(grad_input):
                    raise RuntimeError(f"register_full_backward_hook: a hook of {type(self.module).__name__} returned "
                                       f"{len(new)} grad_input entries for {len(grad_input)} arguments")
                grad_input = tuple(new)
        self.grad_output = None
        return grad_input


def _float_dtype(dtype):
    """Module.to's dtype: float32 or float64 (a cast of integer buffers would be meaningless)."""
    if dtype.kind != "f":
        raise TypeError(f"Module.to: expected a device or a floating-point dtype, got {dtype}")
    check_dtype("Module.to", dtype)
    return dtype
