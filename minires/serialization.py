"""save/load: models, state dicts and whole checkpoints, in NumPy's .npz format or as .safetensors.

The file name's extension chooses the format: ".safetensors" is the format model hubs publish (a
JSON header and raw arrays, read and written through the safetensors package's NumPy API, no
PyTorch, nothing to unpickle); it holds flat {name: array} dicts only, such as a state dict.
Every other name is written as .npz, minires's own format, which holds whole checkpoints.
PyTorch's pickle-based .pth/.pt are not written; reading them is models.load_weights' job.

A .npz file is a zip of .npy arrays, read here with ``allow_pickle=False``: loading a file never
runs code. Nested containers are flattened to one array per leaf, under a "/"-joined key:

    {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
      -> "model/conv1.weight", ..., "optimizer/state/0/momentum_buffer", ...,
         "optimizer/param_groups/0/lr", "optimizer/param_groups/0/params", ..., "epoch"

so a plain state dict keeps its keys ("conv1.weight", "layer1.0.bn1.running_mean", ...) and
``numpy.load`` alone can read any file. Leaves: arrays and Tensors (saved on the host, loaded as
NumPy arrays), bool/int/float/str (saved as 0-d arrays, loaded back as Python values) and None
(no array); a list of bools, ints or floats is one 1-D array. Dict keys are strings without "/" or
ints (an optimizer's parameter indices). One more entry, "__structure__", a JSON string, records
the containers (dict, list; a tuple loads as a list), their key types and each leaf's kind, so
``load`` returns the nested structure that was saved.
"""
import json
import os
import uuid
import zipfile

import numpy as np

from .device import is_array, to_device
from .nn import Module
from .autograd.tensor import Tensor

STRUCTURE_KEY = "__structure__"
_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")  # the names PyTorch's torch.save files go by


def save(obj, path):
    """Write a Module (its state_dict()) or a (nested) dict of arrays, Tensors and numbers to
    ``path``: a .safetensors file if the name ends so (named arrays only), else .npz. Atomic: the
    data goes to a temporary file in the same folder, which then replaces ``path`` in one step, so a
    crash mid-write leaves any old file intact."""
    state = obj.state_dict() if isinstance(obj, Module) else obj
    if not isinstance(state, dict):
        raise TypeError(f"save: expected a Module or a dict, got {type(obj).__name__}")
    path = os.fspath(path)
    if path.endswith(TORCH_SUFFIXES):
        raise ValueError(f"save: {path}: minires does not write PyTorch's pickle-based files; save to .safetensors "
                         "(PyTorch reads it with safetensors.torch.load_file) or .npz")
    arrays = {}
    structure = _flatten(state, "", arrays)
    if path.endswith(".safetensors"):
        data = _safetensors_bytes(structure, arrays)
        write_atomically(path, lambda f: f.write(data))
    else:
        arrays[STRUCTURE_KEY] = np.array(json.dumps(structure))
        write_atomically(path, lambda f: _write_npz(f, arrays))


def load(path):
    """Read a file written by save(): the saved (nested) dict, in the saved order, arrays as NumPy
    arrays. A .npz written by other tools loads as a flat {name: array} dict, and so does a
    .safetensors file (in the file's order: safetensors sorts its entries)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        return _load_safetensors(path)
    _check_npz(path)
    with np.load(path, allow_pickle=False) as npz:
        if STRUCTURE_KEY not in npz.files:
            return {k: npz[k] for k in npz.files}
        structure = json.loads(str(npz[STRUCTURE_KEY]))
        return _unflatten(structure, "", npz)


def write_atomically(path, write, who="save"):
    """Call write(f) on a new temporary file in path's folder, sync it to disk, then rename it to
    ``path``: one step, so ``path`` is always either the old file or the complete new one. ``who``
    names the caller in the one-line error of a folder that is missing or not writable."""
    folder = os.path.dirname(path) or "."
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"  # same folder, so os.replace is one rename
    try:
        f = open(tmp, "xb")
    except OSError as e:  # name the folder, not the temporary file the user never asked for
        problem = f"is not writable ({e.strerror})" if os.path.isdir(folder) else "does not exist"
        raise type(e)(f"{who}: cannot write {path}: the folder {folder} {problem}") from None
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_npz(path):
    """Refuse anything but a zip of .npy arrays before NumPy sees it: np.load takes any other file
    for a pickle and answers with advice to unpickle it, which minires never gives."""
    with open(path, "rb") as f:
        names = zipfile.ZipFile(f).namelist() if zipfile.is_zipfile(f) else None
    if names is None or not all(name.endswith(".npy") for name in names):
        hint = " (PyTorch files load with minires.models.load_weights)" if path.endswith(TORCH_SUFFIXES) else ""
        raise ValueError(f"load: {path} is not a minires/npz weight file{hint}")


def _safetensors():
    """The safetensors package's NumPy API, imported on first use: minires imports without it."""
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("reading or writing .safetensors files needs the 'safetensors' package, which is not "
                          "installed (pip install safetensors)") from None
    return safetensors


def _safetensors_bytes(structure, arrays):
    """The .safetensors file of a flat dict of arrays (structure as _flatten returns it)."""
    not_array = next((key for key, kind in structure[1] if kind != "array"), None)
    if not_array is not None:
        raise TypeError(f"save: a .safetensors file holds named arrays only, and {not_array!r} is not one "
                        "(save checkpoints with other values as .npz)")
    return _safetensors().numpy.save(arrays)


def _load_safetensors(path):
    safetensors = _safetensors()
    try:
        return safetensors.numpy.load_file(path)
    except (safetensors.SafetensorError, TypeError) as e:  # TypeError: a dtype NumPy lacks, e.g. bfloat16
        raise ValueError(f"load: cannot read {path} as a safetensors file: {e}") from None


def _write_npz(f, arrays):
    """What numpy.savez writes (an uncompressed zip of "<key>.npy" files), for any key names, and
    refusing object arrays, which only pickle could store."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)


def _join(prefix, key):
    return f"{prefix}/{key}" if prefix else str(key)


def _flatten(obj, prefix, arrays):
    """Put obj's leaves into ``arrays`` under their flat keys; return its structure:
    ["dict", [[key, structure], ...]], ["list", [structure, ...]], ["scalars", kind] or a leaf kind."""
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)) or k in ("", STRUCTURE_KEY) or "/" in str(k):
                raise ValueError(f"save: bad key {k!r} under {prefix or 'the top level'!r}: keys must be ints or "
                                 f"non-empty strings without '/' (and not {STRUCTURE_KEY!r})")
            items.append([k, _flatten(v, _join(prefix, k), arrays)])
        return ["dict", items]
    if isinstance(obj, (list, tuple)):
        kinds = {_scalar_kind(v) for v in obj}
        if len(kinds) == 1 and None not in kinds and "str" not in kinds:  # e.g. a param group's indices
            arrays[prefix] = np.array(obj)
            return ["scalars", kinds.pop()]
        return ["list", [_flatten(v, _join(prefix, i), arrays) for i, v in enumerate(obj)]]
    if obj is None:
        return "none"
    kind = _scalar_kind(obj)
    if kind:
        arrays[prefix] = np.array(obj)
        return kind
    data = obj.data if isinstance(obj, Tensor) else np.asarray(obj) if isinstance(obj, np.generic) else obj
    if is_array(data):
        arrays[prefix] = to_device(data, "cpu")
        return "array"
    raise TypeError(f"save: cannot save {prefix!r} of type {type(obj).__name__} "
                    "(expected arrays, Tensors, numbers, strings, None, dicts and lists)")


def _scalar_kind(obj):
    """"bool", "int", "float" or "str" for a Python scalar, else None."""
    return next((kind for kind, cls in _SCALARS.items() if isinstance(obj, cls)), None)  # bool first: True is an int


def _unflatten(structure, prefix, npz):
    if isinstance(structure, list):
        kind, body = structure
        if kind == "dict":
            return {k: _unflatten(s, _join(prefix, k), npz) for k, s in body}
        if kind == "list":
            return [_unflatten(s, _join(prefix, i), npz) for i, s in enumerate(body)]
        if kind == "scalars" and body in _SCALARS:
            return [_SCALARS[body](v) for v in npz[prefix].tolist()]
    elif structure == "none":
        return None
    elif structure == "array":
        return npz[prefix]
    elif structure in _SCALARS:
        return _SCALARS[structure](npz[prefix].item())
    raise ValueError(f"load: the file's structure entry is corrupt at {prefix!r}: {structure!r}")
