"""``minires train`` end to end on tiny runs (ResNet-18, small-input stem, on a 36-image folder of 8x8
PNGs that the tests write): its outputs, an exact --resume, --eval-only, and the one-line errors with
exit status 2 that leave the output folder untouched."""
import argparse
import contextlib
import io
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minires
from minires.cli import main
from minires.optim import SGD
from minires.train import _scheduler

# a constant lr after the warmup: the schedule does not depend on --epochs, so a 1-epoch run resumed
# for a 2nd is the same as 2 epochs straight
TINY = ["--model", "resnet18", "--batch-size", "16", "--lr", "0.02", "--warmup-epochs", "0.5", "--schedule", "constant",
        "--nesterov"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """folder:PATH with train/ (12 per class) and test/ (4 per class): three classes of 8x8 images,
    each class a brighter or darker noisy blob."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c, name in enumerate(("dark", "mid", "light")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(80 * c + rng.normal(40, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return f"folder:{root}"


def _train(capsys, *args):
    """(exit status, stdout, stderr) of ``minires train ARGS``, run in this process."""
    status = main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """A 2-epoch run, uninterrupted: (its output folder, what it printed)."""
    out, printed = tmp_path_factory.mktemp("straight"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", *TINY, "--data", data, "--epochs", "2", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_outputs(straight):
    out, printed = straight
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds"
    assert [row.split(",")[0] for row in lines[1:]] == ["1", "2"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = minires.load(out / "last.npz")
    assert last["epoch"] == 2 and last["model_name"] == "resnet18" and last["loader"]["epoch"] == 2
    assert len(last["history"]["test_acc"]) == 2
    best = minires.load(out / "best.npz")
    assert best["history"]["test_acc"][-1] == max(last["history"]["test_acc"])
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    printed = printed.splitlines()
    assert printed[0].startswith("epoch 1/2: train loss ") and printed[1].startswith("epoch 2/2: ")
    assert re.fullmatch(r"test accuracy \d+\.\d% after 2 epochs in (\d+m)?\d+s", printed[-1])


def test_adamw_cosine(data, tmp_path, capsys):
    status, out, _ = _train(capsys, "--batch-size", "16", "--data", data, "--epochs", "1", "--out", tmp_path,
                            "--optimizer", "adamw", "--schedule", "cosine", "--warmup-epochs", "0")
    state = minires.load(tmp_path / "last.npz")["optimizer"]
    assert status == 0 and out.splitlines()[-1].startswith("test accuracy ")
    assert state["param_groups"][0]["betas"] == [0.9, 0.999] and state["param_groups"][0]["weight_decay"] == 0.05
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and state["state"][0]["step"] == 3


@pytest.mark.parametrize("schedule, expected", [
    # 4 batches an epoch, 3 epochs, warmup 1 epoch from lr/10 (0.1, 0.325, 0.55, 0.775), then 8 batches
    ("constant", [0.1, 0.325, 0.55, 0.775] + [1.0] * 8),
    ("step", [0.1, 0.325, 0.55, 0.775] + [1.0] * 4 + [0.1] * 2 + [0.01] * 2),
    ("cosine", [0.1, 0.325, 0.55, 0.775] + [(1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)]),
])
def test_schedules(schedule, expected):
    args = argparse.Namespace(epochs=3, warmup_epochs=1, schedule=schedule)
    opt = SGD([minires.nn.Parameter(np.zeros(1))], lr=1.0)
    scheduler = _scheduler(opt, args, 4, 0)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        scheduler.step()
    assert lrs == pytest.approx(expected, abs=1e-12)
    resumed = _scheduler(opt, args, 4, 6)  # a resumed run jumps to its step
    assert opt.param_groups[0]["lr"] == pytest.approx(expected[6]) and resumed.last_epoch == 6


def _assert_same_run(a_dir, b_dir):
    """Two runs' last checkpoints agree in every metric but the timings, every weight and buffer,
    the optimizer state and the data order; their metrics.csv files too."""
    a, b = minires.load(a_dir / "last.npz"), minires.load(b_dir / "last.npz")
    for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc"):
        assert a["history"][k] == b["history"][k], k
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    for i, state in a["optimizer"]["state"].items():
        np.testing.assert_array_equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"] and a["loader"] == b["loader"]
    metrics = [[row.split(",")[:5] for row in (d / "metrics.csv").read_text().splitlines()] for d in (a_dir, b_dir)]
    assert metrics[0] == metrics[1]


def test_resume_after_an_interruption_is_exact(data, straight, tmp_path, capsys, monkeypatch):
    """The 2-epoch run stopped by Ctrl-C in the middle of its 2nd epoch, then resumed: the same run."""
    out, steps, step = tmp_path / "resumed", [], SGD.step

    def interrupted_step(self):
        steps.append(1)
        if len(steps) == 5:  # 3 batches an epoch: the 2nd of epoch 2
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(SGD, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", out)
    monkeypatch.undo()
    capsys.readouterr()
    assert minires.load(out / "last.npz")["epoch"] == 1
    status, printed, _ = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", out, "--resume")
    assert status == 0 and printed.startswith("epoch 2/2: ")
    _assert_same_run(straight[0], out)


def test_resume_extends_a_finished_run(data, straight, tmp_path, capsys):
    """1 epoch, then --resume --epochs 2: the same as 2 epochs straight."""
    assert _train(capsys, *TINY, "--data", data, "--epochs", "1", "--out", tmp_path)[0] == 0
    assert _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", tmp_path, "--resume")[0] == 0
    _assert_same_run(straight[0], tmp_path)


def test_eval_only(data, straight, capsys):
    status, out, _ = _train(capsys, *TINY, "--data", data, "--out", straight[0], "--eval-only")
    best = minires.load(straight[0] / "best.npz")["history"]
    assert status == 0
    assert out.strip().endswith(f"test accuracy {max(best['test_acc']):.1%}")
    assert f"test loss {best['test_loss'][int(np.argmax(best['test_acc']))]:.4f}" in out


def _snapshot(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))} if folder.exists() else None


def _copy_run(source, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for f in os.listdir(source):
        (run / f).write_bytes((source / f).read_bytes())
    return run


def _corrupt(run):
    data = (run / "last.npz").read_bytes()
    (run / "last.npz").write_bytes(data[: len(data) // 2])


# case: (arguments, the error expected, whether --out holds a finished 2-epoch run or is new)
BAD = {
    "unknown model": (["--model", "resnet7"], r"unknown model 'resnet7': expected one of resnet18, resnet34", False),
    "unknown dataset": (["--data", "imagenet"], r"unknown dataset 'imagenet'", False),
    "missing folder": (["--data", "folder:/no/such/folder"], r"folder: /no/such/folder is not a folder", False),
    "malformed folder": (["--data", "MALFORMED"], r"cannot read .*0.png as an image", False),
    "batch size 0": (["--batch-size", "0"], r"--batch-size must be at least 1, got 0", False),
    "another model": (["--model", "resnet34", "--resume", "--epochs", "3"],
                      r"last.npz is a checkpoint of resnet18, not of --model resnet34", True),
    "corrupt checkpoint": (["--resume", "--epochs", "3"], r"cannot read the checkpoint .*last.npz", True),
    "existing run": ([], r"already holds a run \(last.npz\): pass --resume", True),
    "nothing to resume": (["--resume", "--epochs", "2"], r"has already trained 2 epochs", True),
    "warmup too long": (["--warmup-epochs", "5"], r"--warmup-epochs must be in \[0, --epochs=2\)", False),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input(case, data, straight, tmp_path, capsys):
    args, message, existing = BAD[case]
    if "MALFORMED" in args:
        bad = tmp_path / "bad"
        (bad / "cls").mkdir(parents=True)
        (bad / "cls" / "0.png").write_bytes(b"\x89PNG but truncated")
        args = [a.replace("MALFORMED", f"folder:{bad}") for a in args]
    run = _copy_run(straight[0], tmp_path) if existing else tmp_path / "new"
    if case == "corrupt checkpoint":
        _corrupt(run)
    before = _snapshot(run)
    status, out, err = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", run, *args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("minires train: error: ")
    assert re.search(message, err), err
    assert _snapshot(run) == before  # for a new --out: still None, no folder made


def test_resume_without_checkpoint_writes_nothing(data, tmp_path, capsys):
    status, _, err = _train(capsys, *TINY, "--data", data, "--out", tmp_path / "empty", "--resume")
    assert status == 2 and "holds no checkpoint (last.npz) to resume" in err
    assert not (tmp_path / "empty").exists()


def test_cuda_without_a_gpu(data, tmp_path, capsys):
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("this machine has a GPU")
    except Exception:
        pass
    status, _, err = _train(capsys, *TINY, "--data", data, "--out", tmp_path / "gpu", "--device", "cuda")
    assert status == 2
    assert re.match(r"minires train: error: device 'cuda': CuPy (is not installed|found no CUDA GPU)", err)
    assert not (tmp_path / "gpu").exists()


def test_python_dash_m():
    """``python -m minires train`` is the same command: here a bad batch size, so it stops at once."""
    proc = subprocess.run([sys.executable, "-m", "minires", "train", "--batch-size", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "minires train: error: --batch-size must be at least 1, got 0\n"
