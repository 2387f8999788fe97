"""Loading weights saved by PyTorch (e.g. torchvision's pretrained ResNets) into a minires model.

The file is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only, never arbitrary objects: a weight file cannot run code. torch is needed for this
one reading path only (minires itself does not import it); to drop the dependency, convert once:
``minires.save(minires.models.torch_state_dict(path), "weights.safetensors")``.
models.load_weights reads these files too, and also finds the state dict inside a training
checkpoint and strips a prefix such as "module.".
"""
import pickle
import re

import numpy as np


def read_torch_file(path, caller):
    """What a PyTorch .pth/.pt file holds, its tensors as numpy.ndarray (dicts, lists, tuples and
    plain values kept as they are). ``caller`` names the public function in error messages."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"{caller}: reading a PyTorch weight file needs the 'torch' package, "
                          "which is not installed (pip install torch)") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError) as e:  # torch.load's errors on a file it refuses
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))  # an object: refused, never constructed
        if found:
            raise ValueError(f"{caller}: {path} holds Python objects ({found.group(1)}), not only tensors and "
                             "containers, and minires reads PyTorch files only with torch.load(weights_only=True); "
                             "if you trust the file, load it with torch and save its state dict") from None
        raise ValueError(f"{caller}: {path} is not a PyTorch weight file that torch.load(weights_only=True) "
                         "can read") from None
    return _to_numpy(obj, torch)


def _to_numpy(obj, torch):
    """obj with every tensor in it as a NumPy array (bfloat16 widened to float32)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach()
        return np.asarray((obj.float() if obj.dtype == torch.bfloat16 else obj).numpy())  # NumPy has no bfloat16
    if isinstance(obj, dict):
        return {k: _to_numpy(v, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v, torch) for v in obj)
    return obj


def torch_state_dict(path):
    """The state dict in a PyTorch .pth/.pt file as {name: numpy.ndarray}, in the file's order."""
    state = read_torch_file(path, "load_torch_weights")
    if not isinstance(state, dict):
        raise TypeError(f"load_torch_weights: {path} holds a {type(state).__name__}, not a state dict")
    for k, v in state.items():
        if not isinstance(v, np.ndarray):
            raise TypeError(f"load_torch_weights: {path}: entry {k!r} is a {type(v).__name__}, not a tensor "
                            "(a training checkpoint? models.load_weights finds the state dict inside it)")
    return state


def load_torch_weights(model, path, strict=True):
    """Load a PyTorch state-dict file into ``model`` (keys as torchvision's), cast to the model's
    dtypes; with strict, every key must match (see Module.load_state_dict). Returns the
    (missing_keys, unexpected_keys) pair."""
    return model.load_state_dict(torch_state_dict(path), strict=strict)
