"""models.load_weights: the weight files people actually have, loaded into a minires model.

Real files rarely hold exactly the model's state dict. They come as .safetensors (model hubs), as
PyTorch .pth files or as minires .npz files; as a bare state dict or inside a training checkpoint
({"state_dict": ..., "epoch": ..., "optimizer": ...}); and with every key under one prefix, from
the module that wrapped the network when it was saved ("module." from DataParallel, "backbone.",
"model."). load_weights undoes each of these, says what it did, and when the weights still do not
fit, says why in one paragraph: how many keys match, which are missing or unexpected, which differ
in shape, and what to change.

Reading never runs code from the file: .pth only through torch.load(weights_only=True), .npz with
allow_pickle=False, and .safetensors has nothing to unpickle (and needs no PyTorch).
"""
import logging
import os
from typing import NamedTuple

import numpy as np

from ..serialization import TORCH_SUFFIXES, load
from .torch_weights import read_torch_file

log = logging.getLogger(__name__)

STATE_DICT_ENTRIES = ("state_dict", "model_state_dict", "model")  # where checkpoints keep the weights, in search order
SHOWN = 5  # keys listed per kind of mismatch


class LoadedWeights(NamedTuple):
    """What load_weights did: the checkpoint entry that held the state dict (None: the file is a
    bare state dict), the prefix stripped from the file's keys ("" for none), and the keys left out
    (missing from the file / not in the model; both empty unless strict=False)."""
    path: str
    entry: str | None
    prefix: str
    missing_keys: list
    unexpected_keys: list

    def __str__(self):
        left_out = (f"; left out: {len(self.missing_keys)} missing, {len(self.unexpected_keys)} unexpected"
                    if self.missing_keys or self.unexpected_keys else "")
        return f"load_weights: loaded {_source(self.path, self.entry, self.prefix)}{left_out}"


def load_weights(model, path, prefix=None, key=None, strict=True):
    """Load the weights in ``path`` (.safetensors, PyTorch .pth/.pt/.pth.tar/.ckpt, or minires .npz)
    into ``model``, cast to its dtypes, and return a LoadedWeights report (also logged at INFO).

    key: the checkpoint entry that holds the state dict; by default the file itself if it is one,
    else the first of "state_dict", "model_state_dict", "model" that is (an EMA copy, "ema" or
    "model_ema", is loaded only when named here). prefix: stripped from the keys that start with
    it; by default the prefix that every key in the file shares ("module.", "backbone.", ...) if
    stripping it makes more keys match the model's, else none; "" keeps the keys as they are.
    strict: every model key must be in the file and every file key in the model; either way, shapes
    must agree and at least one key must match. Nothing is written unless everything fits."""
    path = os.fspath(path)
    checkpoint = read_torch_file(path, "load_weights") if path.endswith(TORCH_SUFFIXES) else load(path)
    entry, state = find_state_dict(checkpoint, key, path)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    chosen = best_prefix(state, shapes) if prefix is None else prefix
    chosen = chosen if any(k.startswith(chosen) for k in state) else ""  # report only a prefix that was there
    stripped = strip_prefix(state, chosen)
    problem = mismatch_report(stripped, shapes, strict, hint=_prefix_hint(state, shapes, chosen))
    if problem:
        raise ValueError(f"load_weights: {_source(path, entry, chosen)} does not fit {type(model).__name__}: {problem}")
    missing, unexpected = model.load_state_dict(stripped, strict=strict)
    report = LoadedWeights(path, entry, chosen, missing, unexpected)
    log.info("%s", report)
    return report


def _source(path, entry, prefix):
    """"w.pth (entry 'state_dict', prefix 'module.' stripped)": where the weights came from."""
    notes = ([f"entry {entry!r}"] if entry is not None else []) + ([f"prefix {prefix!r} stripped"] if prefix else [])
    return f"{path} ({', '.join(notes)})" if notes else path


def _is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, np.ndarray) for v in obj.values())


def find_state_dict(checkpoint, key, path):
    """(entry, state dict): the entry ``key`` of the checkpoint, or (None, checkpoint) if the file
    is a bare state dict, or the first of STATE_DICT_ENTRIES that holds one."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"load_weights: {path} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint")
    entries = list(checkpoint)
    if key is None:
        if _is_state_dict(checkpoint):
            return None, checkpoint
        key = next((k for k in STATE_DICT_ENTRIES if _is_state_dict(checkpoint.get(k))), None)
        if key is None:
            raise ValueError(f"load_weights: found no state dict in {path}: its entries are {_listed(entries)}; "
                             "pass key= naming the one that holds the weights")
    if key not in entries:
        raise ValueError(f"load_weights: {path} has no entry {key!r}; its entries are {_listed(entries)}")
    if not _is_state_dict(checkpoint[key]):
        raise ValueError(f"load_weights: {path}: entry {key!r} is not a state dict (a dict of arrays)")
    return key, checkpoint[key]


def shared_prefixes(keys):
    """Every dotted prefix that all keys share, shortest first: ["module.", "module.backbone."] for
    "module.backbone.conv1.weight", "module.backbone.fc.bias", ... (a key's last part is its own)."""
    common = []
    for parts in zip(*(k.split(".")[:-1] for k in keys)):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return [".".join(common[:n]) + "." for n in range(1, len(common) + 1)]


def strip_prefix(state, prefix):
    """The state dict with ``prefix`` taken off the keys that start with it."""
    return {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v for k, v in state.items()}


def _named_right(state, shapes, prefix):
    """How many of the file's keys name a model key once ``prefix`` is stripped."""
    return sum(k in shapes for k in strip_prefix(state, prefix))


def best_prefix(state, shapes):
    """The shared prefix whose stripping makes the most keys name a model key; "" (strip nothing)
    on a tie."""
    return max([""] + shared_prefixes(state), key=lambda p: _named_right(state, shapes, p))


def _prefix_hint(state, shapes, chosen):
    """The hint to pass a prefix, when stripping one that all keys share would match more keys
    than the prefix chosen."""
    better = best_prefix(state, shapes)
    if _named_right(state, shapes, better) > _named_right(state, shapes, chosen):
        return f"every key in the file starts with {better!r}: pass prefix={better!r}"
    return None


def mismatch_report(state, shapes, strict, hint=None):
    """Why ``state`` does not fit a model with these {key: shape}, in one paragraph, or None if it
    fits: shapes must agree, at least one key must match, and with strict no key may be missing or
    unexpected."""
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    wrong = [k for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    matched = len(shapes) - len(missing) - len(wrong)
    if matched and not wrong and not (strict and (missing or unexpected)):
        return None
    parts = [f"{matched} of {len(shapes)} model keys match"]
    if missing:
        parts.append(f"missing from the file ({len(missing)}): {_listed(missing)}")
    if unexpected:
        parts.append(f"not in the model ({len(unexpected)}): {_listed(unexpected)}")
    parts += [_shape_mismatch(k, tuple(state[k].shape), shapes[k]) for k in wrong[:SHOWN]]
    return "; ".join(parts + ([hint] if hint else []))


def _shape_mismatch(key, theirs, ours):
    """'fc.weight is (10, 512) in the file and (1000, 512) in the model', with the fix when the
    classifier is all that differs."""
    text = f"{key} is {theirs} in the file and {ours} in the model"
    if key == "fc.weight" and theirs[1:] == ours[1:]:
        text += f": build the model with num_classes={theirs[0]}"
    return text


def _listed(keys):
    """The first few keys, quoted: 'conv1.weight', 'bn1.weight', ... ."""
    if not keys:
        return "none"
    return ", ".join(repr(k) for k in keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")
