"""Loading weights saved by PyTorch (e.g. torchvision's pretrained ResNets) into a minires model.

The file is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only, never arbitrary objects: a weight file cannot run code. torch is needed for this
one function only (minires itself does not import it); to drop the dependency, convert once:
``minires.save(minires.models.torch_state_dict(path), "weights.npz")``.
"""
import numpy as np


def torch_state_dict(path):
    """The state dict in a PyTorch .pth/.pt file as {name: numpy.ndarray}, in the file's order."""
    try:
        import torch
    except ImportError:
        raise ImportError("load_torch_weights: reading a PyTorch weight file needs the 'torch' package, "
                          "which is not installed (pip install torch)") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"load_torch_weights: {path} holds a {type(state).__name__}, not a state dict")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"load_torch_weights: {path}: entry {k!r} is a {type(v).__name__}, not a tensor "
                            "(a training checkpoint? load it with torch and pass its model state dict "
                            "to model.load_state_dict)")
        v = v.detach()
        out[k] = np.asarray((v.float() if v.dtype == torch.bfloat16 else v).numpy())  # NumPy has no bfloat16
    return out


def load_torch_weights(model, path, strict=True):
    """Load a PyTorch state-dict file into ``model`` (keys as torchvision's), cast to the model's
    dtypes; with strict, every key must match (see Module.load_state_dict). Returns the
    (missing_keys, unexpected_keys) pair."""
    return model.load_state_dict(torch_state_dict(path), strict=strict)
