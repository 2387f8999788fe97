"""Devices: where a Tensor's array lives, and the array module (numpy, cupy, ...) that works on it.

A Device is a name, the type of the arrays that live there, its array module ``xp``, the two
copies to and from the host, and optionally a ``copier``: asynchronous host-to-device copies, which
let minires.data.prefetch copy the next batch while this one computes (the GPU's: a copy stream
and pinned host memory). "cpu" is NumPy's ndarray and is always there; "cuda" is CuPy's,
registered the first time it is asked for. Everything device-specific is registered under the
device's name, never written into an op: kernels (kernels.Kernel.register) and convolution plans
(minires.plans.register). A new device (tests register a test-only one) is one register_device call
plus whatever kernels and plans it brings; the rest falls back to the array-module generic
references, which run on its xp.
"""
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Device", "register_device", "get_device", "device_of", "in_use", "is_device_name", "device_or_dtype", "array_module", "is_array", "to_device"]


@dataclass(frozen=True)
class Device:
    name: str
    array_type: type
    xp: Any                      # the array module: numpy's functions over array_type
    to_host: Callable            # array here -> NumPy array
    from_host: Callable          # NumPy (or any) array -> array here
    copier: Optional[Callable] = None  # () -> asynchronous copies (minires.data.prefetch), or None


_by_name, _by_type = {}, {}


def register_device(device):
    """Make ``device`` known by its name and by its array type (replacing one of the same name)."""
    _by_name[device.name] = device
    _by_type[device.array_type] = device
    return device


CPU = register_device(Device("cpu", np.ndarray, np, to_host=lambda a: a, from_host=np.asarray))


def _cuda():
    """The "cuda" device over CuPy, or a one-line error saying what is missing."""
    try:
        import cupy
    except ImportError:
        raise RuntimeError("device 'cuda': CuPy is not installed (pip install 'minires[gpu]')") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError
    except Exception:
        raise RuntimeError("device 'cuda': CuPy found no CUDA GPU on this machine") from None
    from .cuda import StreamCopier, _install_cuda  # its copies, kernels and plans
    device = register_device(Device("cuda", cupy.ndarray, cupy, to_host=cupy.asnumpy, from_host=cupy.asarray,
                                    copier=StreamCopier))
    _install_cuda()
    return device


def in_use(name):
    """Whether device ``name`` has been registered (asked for) in this process."""
    return name in _by_name


def get_device(name):
    """The Device called ``name`` ("cpu", "cuda", or one registered)."""
    if name not in _by_name and name == "cuda":
        return _cuda()
    if name not in _by_name:
        raise ValueError(f"unknown device {name!r}: expected one of {sorted(set(_by_name) | {'cuda'})}")
    return _by_name[name]


def is_device_name(name):
    """Whether string ``name`` names a device ("cpu", "cuda" or one registered), not a dtype."""
    return name in _by_name or name == "cuda"


def device_or_dtype(target, caller):
    """(device name, None) or (None, numpy dtype) for a ``to(target)`` call, or a one-line error."""
    if isinstance(target, str) and is_device_name(target):
        return target, None
    try:
        return None, np.dtype(target)
    except TypeError:
        raise TypeError(f"{caller}: {target!r} is neither a device nor a dtype") from None


def device_of(a):
    """The Device that array ``a`` lives on (its type, or the nearest registered base type); "cpu"
    for host values that are no array (NumPy and Python scalars)."""
    device = _by_type.get(type(a))
    if device is not None:
        return device
    for base in type(a).__mro__[1:]:
        if base in _by_type:
            return _by_type[base]
    if "cupy" in sys.modules and isinstance(a, sys.modules["cupy"].ndarray):
        return _cuda()
    return CPU


def array_module(a):
    """The array module of ``a``'s device: numpy for NumPy arrays, cupy for CuPy arrays, ..."""
    return device_of(a).xp


def is_array(a):
    """True for an array of any known device."""
    return isinstance(a, tuple(_by_type)) or ("cupy" in sys.modules and isinstance(a, sys.modules["cupy"].ndarray))


def to_device(a, name):
    """``a`` on device ``name``; the same array when it is already there."""
    target, here = get_device(name), device_of(a)
    if here is target:
        return a
    return target.from_host(here.to_host(a))
