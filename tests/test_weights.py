"""models.load_weights against the checkpoint shapes PyTorch users actually have (bare, nested,
prefixed, safetensors), each built with PyTorch and checked by the logits; the mismatch reports word
for word; pickles refused; safetensors read without PyTorch; and the way back: a minires model
exported and loaded by PyTorch's torchvision-layout ResNet."""
import argparse
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import minires
from minires import models

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
from torch_resnet import torch_resnet  # noqa: E402

X = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_net(num_classes=10, seed=0):
    """The torch reference ResNet-18 (32x32 stem) with its batch norms' weights, biases and running
    statistics drawn at random too, so that any tensor loaded wrongly changes the logits."""
    torch.manual_seed(seed)
    net = torch_resnet("resnet18", num_classes=num_classes, small_input=True)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def minires_net(num_classes=10):
    return models.resnet18(num_classes=num_classes, small_input=True)


def assert_same_logits(model, net):
    """float32 logits equal to 1e-5 of their scale, both models in eval mode."""
    model.eval(), net.eval()
    with torch.no_grad(), minires.no_grad():
        ours, theirs = model(minires.Tensor(X)).numpy(), net(torch.from_numpy(X)).numpy()
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


class Wrapped(torch.nn.Module):
    """A torchvision-layout ResNet-18 with a 10-class head kept as self.backbone: every key of its
    state dict starts with "backbone."."""

    def __init__(self, net):
        super().__init__()
        self.backbone = net


def checkpoint_files(net, tmp_path):
    """{name: (path, entry, prefix)}: ``net``'s weights saved in each common checkpoint shape, with
    the entry and prefix load_weights must find."""
    sd = net.state_dict()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    files = {
        "bare": ("w.pth", sd, None, ""),
        "nested": ("ckpt.pth.tar", {"epoch": 3, "state_dict": sd, "optimizer": opt.state_dict()}, "state_dict", ""),
        "model": ("ckpt.pth", {"model": sd, "epoch": 3, "args": {"lr": 0.1}}, "model", ""),
        "model_state_dict": ("ckpt.pt", {"model_state_dict": sd, "optimizer_state_dict": opt.state_dict()},
                             "model_state_dict", ""),
        "module.": ("ddp.pth", torch.nn.DataParallel(net).state_dict(), None, "module."),
        "backbone.": ("bb.pth", Wrapped(net).state_dict(), None, "backbone."),
        "lightning": ("last.ckpt", {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 10},
                      "state_dict", "model."),
    }
    out = {}
    for name, (filename, obj, entry, prefix) in files.items():
        torch.save(obj, tmp_path / filename)
        out[name] = (str(tmp_path / filename), entry, prefix)
    safetensors_torch.save_file(sd, tmp_path / "w.safetensors")
    out["safetensors"] = (str(tmp_path / "w.safetensors"), None, "")
    return out


def test_every_checkpoint_shape_loads_with_pytorchs_logits(tmp_path):
    net = torch_net()
    theirs = {k: v.numpy() for k, v in net.state_dict().items()}
    for name, (path, entry, prefix) in checkpoint_files(net, tmp_path).items():
        model = minires_net()
        assert models.load_weights(model, path) == (path, entry, prefix, [], []), name
        assert all(np.array_equal(v.numpy(), theirs[k]) for k, v in model.state_dict().items()), name
        assert_same_logits(model, net)


def test_what_was_done_is_reported_and_logged(tmp_path, caplog):
    net = torch_net()
    torch.save({"state_dict": torch.nn.DataParallel(net).state_dict()}, tmp_path / "ckpt.pth")
    with caplog.at_level(logging.INFO, logger="minires"):
        report = models.load_weights(minires_net(), tmp_path / "ckpt.pth")
    line = f"load_weights: loaded {tmp_path / 'ckpt.pth'} (entry 'state_dict', prefix 'module.' stripped)"
    assert str(report) == line and caplog.messages == [line]
    torch.save(net.state_dict(), tmp_path / "w.pth")
    assert models.load_weights(minires_net(), tmp_path / "w.pth", prefix="module.").prefix == ""  # none was there


def test_ema_weights_load_only_when_asked(tmp_path):
    net, ema = torch_net(seed=0), torch_net(seed=1)
    torch.save({"model": net.state_dict(), "model_ema": ema.state_dict()}, tmp_path / "ckpt.pth")
    model = minires_net()
    assert models.load_weights(model, tmp_path / "ckpt.pth").entry == "model"
    assert_same_logits(model, net)
    assert models.load_weights(model, tmp_path / "ckpt.pth", key="model_ema").entry == "model_ema"
    assert_same_logits(model, ema)

    torch.save({"ema": ema.state_dict(), "epoch": 3}, tmp_path / "ema.pth")
    with pytest.raises(ValueError) as info:
        models.load_weights(model, tmp_path / "ema.pth")
    assert str(info.value) == (f"load_weights: found no state dict in {tmp_path / 'ema.pth'}: its entries are "
                               "'ema', 'epoch'; pass key= naming the one that holds the weights")


def test_a_10_class_file_into_a_1000_class_model_says_num_classes(tmp_path):
    torch.save(Wrapped(torch_net()).state_dict(), tmp_path / "bb.pth")
    model = models.resnet18(small_input=True)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        models.load_weights(model, tmp_path / "bb.pth")
    assert str(info.value) == (
        f"load_weights: {tmp_path / 'bb.pth'} (prefix 'backbone.' stripped) does not fit ResNet: 120 of 122 model "
        "keys match; fc.weight is (10, 512) in the file and (1000, 512) in the model: build the model with "
        "num_classes=10; fc.bias is (10,) in the file and (1000,) in the model")
    assert all(np.array_equal(v.numpy(), before[k]) for k, v in model.state_dict().items())  # nothing written


def test_keys_under_a_prefix_the_user_kept_get_the_prefix_hint(tmp_path):
    torch.save(Wrapped(torch_net()).state_dict(), tmp_path / "bb.pth")
    with pytest.raises(ValueError) as info:
        models.load_weights(minires_net(), tmp_path / "bb.pth", prefix="")
    assert str(info.value) == (
        f"load_weights: {tmp_path / 'bb.pth'} does not fit ResNet: 0 of 122 model keys match; missing from the file "
        "(122): 'conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var', ...; not in the "
        "model (122): 'backbone.conv1.weight', 'backbone.bn1.weight', 'backbone.bn1.bias', "
        "'backbone.bn1.running_mean', 'backbone.bn1.running_var', ...; every key in the file starts with "
        "'backbone.': pass prefix='backbone.'")
    model = minires_net()
    assert models.load_weights(model, tmp_path / "bb.pth", prefix="backbone.").prefix == "backbone."


def test_strict_false_loads_what_matches_and_reports_the_rest(tmp_path):
    net = torch_net()
    headless = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    headless["projection.weight"] = torch.ones(3)
    torch.save(headless, tmp_path / "headless.pth")
    with pytest.raises(ValueError) as info:
        models.load_weights(minires_net(), tmp_path / "headless.pth")
    assert str(info.value) == (f"load_weights: {tmp_path / 'headless.pth'} does not fit ResNet: 120 of 122 model keys "
                               "match; missing from the file (2): 'fc.weight', 'fc.bias'; not in the model (1): "
                               "'projection.weight'")

    model = minires_net()
    report = models.load_weights(model, tmp_path / "headless.pth", strict=False)
    assert (report.missing_keys, report.unexpected_keys) == (["fc.weight", "fc.bias"], ["projection.weight"])
    assert all(np.array_equal(model.state_dict()[k].numpy(), v.numpy()) for k, v in net.state_dict().items()
               if not k.startswith("fc."))

    torch.save({"head.weight": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"does not fit ResNet: 0 of 122 model keys match; "):  # strict or not
        models.load_weights(minires_net(), tmp_path / "other.pth", strict=False)


def test_entries_that_hold_no_state_dict_are_named(tmp_path):
    torch.save({"state_dict": torch_net().state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError) as info:
        models.load_weights(minires_net(), tmp_path / "ckpt.pth", key="epoch")
    assert str(info.value) == (f"load_weights: {tmp_path / 'ckpt.pth'}: entry 'epoch' is not a state dict "
                               "(a dict of arrays)")
    with pytest.raises(ValueError) as info:
        models.load_weights(minires_net(), tmp_path / "ckpt.pth", key="ema")
    assert str(info.value) == (f"load_weights: {tmp_path / 'ckpt.pth'} has no entry 'ema'; its entries are "
                               "'state_dict', 'epoch'")
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(ValueError) as info:
        models.load_weights(minires_net(), tmp_path / "list.pth")
    assert str(info.value) == f"load_weights: {tmp_path / 'list.pth'} holds a list, not a state dict or a checkpoint"


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": torch_net().state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "ref.pth")
    with pytest.raises(ValueError) as info:  # the torchvision reference scripts' checkpoints hold their args
        models.load_weights(minires_net(), tmp_path / "ref.pth")
    assert str(info.value) == (f"load_weights: {tmp_path / 'ref.pth'} holds Python objects (argparse.Namespace), not "
                               "only tensors and containers, and minires reads PyTorch files only with "
                               "torch.load(weights_only=True); if you trust the file, load it with torch and save "
                               "its state dict")
    for name, content in [("notes.pth", b"not a PyTorch file"), ("broken.pth", b"PK\x03\x04 cut short")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError) as info:
            models.load_weights(minires_net(), tmp_path / name)
        assert str(info.value) == (f"load_weights: {tmp_path / name} is not a PyTorch weight file that "
                                   "torch.load(weights_only=True) can read")
    np.savez(tmp_path / "objects.npz", w=np.array([{}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        models.load_weights(minires_net(), tmp_path / "objects.npz")


def test_minires_training_checkpoints_load(tmp_path):
    model = minires_net()
    opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    minires.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "last.npz")
    fresh = models.resnet18(num_classes=10, small_input=True)
    assert models.load_weights(fresh, tmp_path / "last.npz").entry == "model"
    assert all(np.array_equal(v.numpy(), model.state_dict()[k].numpy()) for k, v in fresh.state_dict().items())


def test_safetensors_load_with_torch_not_importable(tmp_path):
    net = torch_net()
    safetensors_torch.save_file(net.state_dict(), tmp_path / "w.safetensors")
    script = f"""
import sys
sys.modules["torch"] = None  # import torch now raises ImportError
import minires
from minires import models
model = models.resnet18(num_classes=10, small_input=True)
print(models.load_weights(model, {str(tmp_path / "w.safetensors")!r}))
minires.save(model, {str(tmp_path / "loaded.npz")!r})
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"load_weights: loaded {tmp_path / 'w.safetensors'}\n"
    loaded = minires.load(tmp_path / "loaded.npz")
    assert all(np.array_equal(loaded[k], v.numpy()) for k, v in net.state_dict().items())


def test_a_trained_minires_model_exports_to_pytorch(tmp_path):
    model = minires_net()
    opt = minires.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    labels = np.array([1, 7])
    for _ in range(2):  # train mode: the batch norms' running statistics move too
        loss = minires.functional.cross_entropy(model(minires.Tensor(X)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    minires.save(model, tmp_path / "r18.safetensors")
    minires.save(model, tmp_path / "r18.npz")
    from_safetensors = safetensors_torch.load_file(tmp_path / "r18.safetensors")
    from_npz = {k: torch.from_numpy(v) for k, v in minires.load(tmp_path / "r18.npz").items()}
    for state in (from_safetensors, from_npz):
        net = torch_resnet("resnet18", num_classes=10, small_input=True)
        net.load_state_dict(state)  # strict: torchvision's keys and shapes, unchanged
        assert int(net.bn1.num_batches_tracked) == 2
        assert_same_logits(model, net)
