"""minires.save / minires.load: .npz round trips of models, state dicts and nested checkpoints,
atomic writes, and files that must not run code."""
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import minires
from minires import models, nn


def small_model():
    minires.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 2))


def test_model_round_trip_keeps_keys_order_dtypes_and_values(tmp_path):
    model = models.resnet18(num_classes=10)
    model.bn1.num_batches_tracked.data += 3
    minires.save(model, tmp_path / "r18.npz")
    state = minires.load(tmp_path / "r18.npz")
    own = model.state_dict()
    assert list(state) == list(own)
    assert all(isinstance(v, np.ndarray) and v.dtype == own[k].dtype and np.array_equal(v, own[k].numpy())
               for k, v in state.items())
    assert state["bn1.num_batches_tracked"] == 3
    assert list(np.load(tmp_path / "r18.npz").keys())[:2] == ["conv1.weight", "bn1.weight"]  # readable by NumPy alone

    other = models.resnet18(num_classes=10)
    other.load_state_dict(state)
    assert all(np.array_equal(v.numpy(), own[k].numpy()) for k, v in other.state_dict().items())


def test_checkpoint_with_optimizer_state_round_trips(tmp_path):
    model = small_model()
    opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    loss = minires.functional.cross_entropy(model(minires.Tensor(np.ones((2, 3, 8, 8), np.float32))), np.array([0, 1]))
    loss.backward()
    opt.step()
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "best": 0.25,
                  "arch": "tiny", "note": None, "milestones": (30, 60), "flags": [True, False], "empty": []}
    minires.save(checkpoint, tmp_path / "ckpt.npz")

    keys = set(np.load(tmp_path / "ckpt.npz").files)
    assert {"model/0.weight", "optimizer/state/0/momentum_buffer", "optimizer/param_groups/0/params", "epoch"} <= keys

    back = minires.load(tmp_path / "ckpt.npz")
    assert (back["epoch"], back["best"], back["arch"], back["note"]) == (3, 0.25, "tiny", None)
    assert type(back["epoch"]) is int and back["milestones"] == [30, 60] and back["flags"] == [True, False]
    assert back["empty"] == []
    assert list(back["model"]) == list(checkpoint["model"])
    groups = back["optimizer"]["param_groups"]
    assert groups == opt.state_dict()["param_groups"] and type(groups[0]["nesterov"]) is bool
    assert list(back["optimizer"]["state"]) == list(range(len(list(model.parameters()))))  # int keys stay ints

    fresh = small_model()
    fresh.load_state_dict(back["model"])
    fresh_opt = minires.optim.SGD(fresh.parameters(), lr=0.5)
    fresh_opt.load_state_dict(back["optimizer"])
    assert fresh_opt.param_groups[0]["lr"] == 0.1
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert np.array_equal(opt.state[p]["momentum_buffer"], fresh_opt.state[q]["momentum_buffer"])


def test_save_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="Module or a dict"):
        minires.save([1, 2], tmp_path / "x.npz")
    with pytest.raises(ValueError, match="'a/b'"):
        minires.save({"a/b": np.zeros(2)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="'model/f' of type object"):
        minires.save({"model": {"f": object()}}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="pickle"):
        minires.save({"objects": np.array([{}, None], dtype=object)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []  # no file, no temporary left behind


def test_failure_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    minires.save({"w": np.arange(3.0)}, path)
    before = path.read_bytes()

    real_write = np.lib.format.write_array
    calls = []

    def write_then_crash(f, array, **kwargs):  # the first array is written, the second fails half way
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\x93NUMPY partial")
            raise OSError("disk full")
        real_write(f, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        minires.save({"w": np.zeros(1000), "v": np.ones(1000)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["weights.npz"]
    monkeypatch.undo()
    assert np.array_equal(minires.load(path)["w"], np.arange(3.0))


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))  # an object array: stored with pickle
    with pytest.raises(ValueError, match="allow_pickle"):
        minires.load(path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ValueError, match="not a minires/npz weight file"):
        minires.load(tmp_path / "evil.pkl")


@pytest.mark.parametrize("name,content", [("weights.pkl", pickle.dumps({"w": 1})), ("notes.npz", b"plain text\n"),
                                          ("array.npy", None), ("other.zip", None)],
                         ids=["pickle", "text", "npy", "zip"])
def test_load_names_a_file_that_is_not_npz_in_one_line(tmp_path, name, content):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.ones(3))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        minires.load(path)
    assert str(info.value) == f"load: {path} is not a minires/npz weight file"  # never NumPy's "use pickle.load()"


def test_load_points_pytorch_files_to_load_weights(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pth")  # a zip too, of pickles
    with pytest.raises(ValueError) as info:
        minires.load(tmp_path / "w.pth")
    assert str(info.value) == (f"load: {tmp_path / 'w.pth'} is not a minires/npz weight file "
                               "(PyTorch files load with minires.models.load_weights)")


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    path = tmp_path / "runs" / "w.npz"
    with pytest.raises(FileNotFoundError) as info:
        minires.save({"w": np.ones(2)}, path)
    assert str(info.value) == f"save: cannot write {path}: the folder {tmp_path / 'runs'} does not exist"
    assert not (tmp_path / "runs").exists()


def test_load_reads_plain_npz_files(tmp_path):
    np.savez(tmp_path / "plain.npz", **{"conv1.weight": np.ones((2, 3)), "fc.bias": np.zeros(2)})
    state = minires.load(tmp_path / "plain.npz")
    assert list(state) == ["conv1.weight", "fc.bias"] and state["conv1.weight"].shape == (2, 3)


def test_tensors_and_float64_models_keep_their_dtype(tmp_path):
    minires.save(small_model().double(), tmp_path / "m.npz")
    assert minires.load(tmp_path / "m.npz")["0.weight"].dtype == np.float64
    minires.save({"x": minires.Tensor(np.ones(2, np.float32)), "s": np.float32(2)}, tmp_path / "t.npz")
    back = minires.load(tmp_path / "t.npz")
    assert back["x"].dtype == np.float32 and back["s"].shape == () and back["s"].dtype == np.float32


# --- .safetensors ---------------------------------------------------------------------------------
def test_safetensors_round_trip_readable_by_the_safetensors_package(tmp_path):
    from safetensors.numpy import load_file
    model = models.resnet18(num_classes=10)
    model.bn1.num_batches_tracked.data += 3
    minires.save(model, tmp_path / "r18.safetensors")
    own = {k: v.numpy() for k, v in model.state_dict().items()}
    for state in (minires.load(tmp_path / "r18.safetensors"), load_file(tmp_path / "r18.safetensors")):
        assert sorted(state) == sorted(own)
        assert all(v.dtype == own[k].dtype and np.array_equal(v, own[k]) for k, v in state.items())


def test_safetensors_holds_named_arrays_only(tmp_path):
    with pytest.raises(TypeError) as info:
        minires.save({"model": small_model().state_dict(), "epoch": 3}, tmp_path / "ckpt.safetensors")
    assert str(info.value) == ("save: a .safetensors file holds named arrays only, and 'model' is not one "
                               "(save checkpoints with other values as .npz)")
    assert os.listdir(tmp_path) == []


def test_unreadable_safetensors_file_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=f"^load: cannot read {re.escape(str(path))} as a safetensors file: "):
        minires.load(path)


def test_save_refuses_pytorch_file_names(tmp_path):
    with pytest.raises(ValueError) as info:
        minires.save(small_model(), tmp_path / "w.pth")
    assert str(info.value) == (f"save: {tmp_path / 'w.pth'}: minires does not write PyTorch's pickle-based files; "
                               "save to .safetensors (PyTorch reads it with safetensors.torch.load_file) or .npz")
    assert os.listdir(tmp_path) == []
