"""Reference results of whole ResNets, shared by tests/test_models.py and this generator.

Each case draws every state-dict entry of a model (weights, BN affine parameters and running
statistics) and an input batch with NumPy from a seed, so minires and PyTorch (tests/torch_resnet.py)
get the very same model. ``run`` computes in one precision: the logits in eval mode; the logits, the
cross-entropy loss and every parameter's gradient after a training-mode forward and backward; and
the buffers after it (running statistics, num_batches_tracked).

How close two results must be. Errors are normwise, per tensor: |ours - ref| / scale (Frobenius
norms, see ``scales``), against PyTorch in float64: below 1e-9 in float64 (unconstrained random
weights) and below 1e-4 in float32. For float32 the weights keep every ReLU input far from the kink
at 0 (draw_state's margin): a value within float32 rounding of 0 could fall on either side in two
implementations and change its gradient entirely.

The inputs are 64x64 (32x32 with the small-input stem), so that layer4 sees 2x2 (4x4) maps and its batch norms 16 values per channel: at
1x1 (32x32 inputs), 4 values per channel make training-mode batch norm so ill-conditioned that
PyTorch's own float32 gradients are 1e-3 off its float64 ones.

Run this file (torch needed) to rewrite the golden files models_<case>.npz, used when torch is not
installed. They hold no weights: the seed and, per precision, PyTorch's float64 logits and loss, a
few gradients and running statistics in full, for every gradient and buffer its norm and its
projection on a random unit vector (drawn from the seed).

    python tests/reference/make_model_reference.py
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (architecture, constructor options, input shape (N, C, H, W), seed).
CASES = {
    "resnet18": ("resnet18", {"num_classes": 10}, (4, 3, 64, 64), 18),
    "resnet50": ("resnet50", {"num_classes": 10}, (4, 3, 64, 64), 50),
    # the small-input stem keeps 32x32 maps in layer1: its convolutions run Winograd F(4x4, 3x3)
    "resnet18_small": ("resnet18", {"num_classes": 10, "small_input": True}, (4, 3, 32, 32), 19),
}
TOL = {"float32": 1e-4, "float64": 1e-9}
MARGIN = {"float32": 4.0, "float64": 0.0}  # draw_state's margin for the check in each precision
OUTPUTS = ("logits_eval", "logits_train", "loss")
# Gradients and running statistics kept in full in the golden files (besides every projection).
FULL_KEYS = ["fc.bias", "bn1.weight", "bn1.running_mean", "bn1.running_var", "layer1.0.bn1.running_var"]


def draw_state(shapes, seed, margin=0.0):
    """{name: float64 array (int64 for num_batches_tracked)} for {name: shape}, in that order:
    He-scaled normal conv/linear weights, BN weights in [0.5, 1], running means N(0, 0.2^2),
    running variances in [0.5, 2], biases N(0, 0.2^2).

    margin > 0 keeps the ReLU inputs of a training-mode forward away from 0: BN biases get
    magnitudes in [margin, margin + 2], above |BN weight * normalized value| wherever the normalized
    value is below margin. The BNs before a residual addition get positive biases, the others
    positive ones for 3/4 of the channels and negative ones (inactive channels) for the rest."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(rng.integers(0, 100), dtype=np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("weight") and len(shape) == 1:
            state[name] = rng.uniform(0.5, 1.0, shape)
        elif name.endswith("weight"):
            state[name] = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif name.endswith("bias") and margin and f"{name[:-4]}running_mean" in shapes:
            sign = 1.0 if _feeds_residual(name, shapes) else rng.choice([1.0, 1.0, 1.0, -1.0], shape)
            state[name] = sign * rng.uniform(margin, margin + 2, shape)
        else:
            state[name] = rng.normal(0.0, 0.2, shape)
    return state


def _feeds_residual(name, shapes):
    """True for the bias of a block's last BN or of its shortcut's BN (their sum goes into a ReLU)."""
    module = name.rsplit(".", 1)[0]
    block, _, bn = module.rpartition(".")
    return module.endswith("downsample.1") or bn == "bn3" or (bn == "bn2" and f"{block}.bn3.weight" not in shapes)


def draw_batch(shape, num_classes, seed):
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal(shape), rng.integers(0, num_classes, shape[0])


def run(model, state, x, target, to_array, to_tensor, cross_entropy):
    """Eval logits, train logits, loss, {parameter: gradient} and {buffer: value} of ``model``
    (minires or torch: the framework comes in as three small functions) after loading ``state``."""
    model.load_state_dict({k: to_tensor(v) for k, v in state.items()})
    model.eval()
    logits_eval = to_array(model(to_tensor(x)))
    model.train()
    logits = model(to_tensor(x))
    loss = cross_entropy(logits, target)
    loss.backward()
    return {"logits_eval": logits_eval, "logits_train": to_array(logits), "loss": to_array(loss),
            "grads": {k: to_array(p.grad) for k, p in model.named_parameters()},
            "buffers": {k: to_array(b) for k, b in model.named_buffers()}}


def floats(values):
    return {k: v for k, v in values.items() if v.dtype.kind == "f"}


def scales(values):
    """Per tensor, the norm that its error is relative to: its own, except for a batch norm's bias
    gradient sum(gy), which cancels to ~0 where the next training-mode batch norm removes any shift
    (the BNs feeding a residual addition here): it gets the larger of its own norm and that of its
    weight's gradient sum(gy * xhat), a sum of the same terms gy (|xhat| ~ 1)."""
    def scale(name, v):
        weight = values.get(name[:-len("bias")] + "weight") if name.endswith(".bias") else None
        own = np.linalg.norm(v)
        return max(own, np.linalg.norm(weight)) if weight is not None and weight.ndim == 1 else own
    return np.array([scale(k, v) for k, v in values.items()])


def distance(a, b):
    """|a - b|, the Frobenius norm, in float64."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64))


def errors(ours, ref):
    """Normwise relative errors of results ``ours`` against ``ref``: a float per output, an array
    (one per tensor, in order) per group."""
    out = {k: distance(ours[k], ref[k]) / np.linalg.norm(ref[k]) for k in OUTPUTS}
    for group in ("grads", "buffers"):
        theirs = floats(ref[group])
        out[group] = np.array([distance(ours[group][k], v) for k, v in theirs.items()]) / scales(theirs)
    return out


def golden(ref):
    """A golden-file section (saved with minires.save) for PyTorch's float64 results ``ref``."""
    out = {k: ref[k] for k in OUTPUTS}
    for group in ("grads", "buffers"):
        values = floats(ref[group])
        out[group] = {"scale": scales(values), "projection": projections(values, ref["seed"]),
                      "full": {k: values[k] for k in FULL_KEYS if k in values},
                      "int": [int(v) for k, v in ref[group].items() if k not in values]}
    return out


def projections(values, seed):
    """The projections of the arrays in ``values`` on random unit vectors (drawn from ``seed``)."""
    rng = np.random.default_rng(seed + 2)
    out = []
    for v in values.values():
        r = rng.standard_normal(v.shape)
        out.append(np.vdot(v.astype(np.float64), r) / np.linalg.norm(r))
    return np.array(out)


def inputs(case, shapes, check):
    """(state, x, target) of ``case`` for the check in precision ``check``, state-dict ``shapes``."""
    arch, options, shape, seed = CASES[case]
    return (draw_state(shapes, seed, MARGIN[check]),) + draw_batch(shape, options["num_classes"], seed)


def torch_results(case, check, dtype):
    """``run`` with the torch model of ``case`` in ``dtype``, with the weights of the check in
    precision ``check`` (torch must be importable)."""
    import torch
    if os.path.dirname(HERE) not in sys.path:
        sys.path.insert(0, os.path.dirname(HERE))
    from torch_resnet import torch_resnet

    arch, options, _, seed = CASES[case]
    model = torch_resnet(arch, **options).to(getattr(torch, dtype))
    state, x, target = inputs(case, {k: tuple(v.shape) for k, v in model.state_dict().items()}, check)
    to_tensor = lambda a: torch.from_numpy(a.astype(dtype) if a.dtype.kind == "f" else a)  # noqa: E731
    return {"seed": seed, **run(model, state, x, torch.from_numpy(target), lambda t: t.detach().numpy(), to_tensor,
                                torch.nn.functional.cross_entropy)}


def main():
    import minires

    for case, (_, _, _, seed) in CASES.items():
        path = os.path.join(HERE, f"models_{case}.npz")
        minires.save({"seed": seed, "float64": golden(torch_results(case, "float64", "float64")),
                      "float32": golden(torch_results(case, "float32", "float64"))}, path)
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")


if __name__ == "__main__":
    main()
