"""``minires train`` end to end on tiny runs (ResNet-18, small-input stem, on a 36-image folder of 8x8
PNGs that the tests write): its outputs, an exact --resume, --eval-only, the one-line errors with exit
status 2 that leave the output folder untouched, stops by signal (130, 143) and at a loss that is not
finite (3), and the run folder's cleanup. Kills at every write: tests/test_train_faults.py."""
import argparse
import contextlib
import io
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minires
import minires.data
from minires.cli import main
from minires.optim import SGD
from minires.train import _scheduler, evaluate
from train_runs import OUTPUTS, TINY, assert_consistent, assert_same_run, leftovers, make_image_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imgs"))


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
    assert assert_consistent(out) == 2 and not leftovers(out)
    assert all(os.path.islink(out / name) for name in OUTPUTS)  # into the committed epoch's folder
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


def _signal_at_step(monkeypatch, n, signum):
    """Make the n-th SGD step of this process send it ``signum`` (as Ctrl-C would) before stepping."""
    steps, step = [], SGD.step

    def signalled_step(self):
        steps.append(1)
        if len(steps) == n:
            os.kill(os.getpid(), signum)
        step(self)

    monkeypatch.setattr(SGD, "step", signalled_step)


def test_ctrl_c_says_how_to_resume_and_the_resume_is_exact(data, straight, tmp_path, capsys, monkeypatch):
    """The 2-epoch run stopped by Ctrl-C in the middle of its 2nd epoch: exit status 130, one line
    naming the epoch and step and the command that continues; that command finishes the same run."""
    out = tmp_path / "resumed"
    _signal_at_step(monkeypatch, 5, signal.SIGINT)  # 3 batches an epoch: the 2nd of epoch 2
    status, printed, err = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", out)
    monkeypatch.undo()
    command = (f"minires train --data {data} --epochs 2 --batch-size 16 --lr 0.02 --nesterov --schedule constant "
               f"--warmup-epochs 0.5 --out {out} --resume")  # the options that are not the defaults
    assert status == 130 and printed.startswith("epoch 1/2: ")
    assert err.splitlines()[-1] == (f"minires train: interrupted by SIGINT in epoch 2/2 at step 2/3; {out} holds epoch 1: "
                                    f"resume with: {command}")
    assert assert_consistent(out) == 1 and not leftovers(out)
    status, printed, _ = _train(capsys, *shlex.split(command)[2:])
    assert status == 0 and printed.startswith("epoch 2/2: ")
    assert_same_run(straight[0], out)


def test_a_signal_during_a_commit_waits_for_its_end(data, tmp_path, capsys, monkeypatch):
    """SIGTERM while epoch 1 is being saved: the commit completes, then the run stops (143)."""
    save = minires.train.save

    def signalled_save(state, path):
        os.kill(os.getpid(), signal.SIGTERM)
        save(state, path)

    monkeypatch.setattr(minires.train, "save", signalled_save)
    status, printed, err = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", tmp_path)
    assert status == 143 and printed.startswith("epoch 1/2: ")  # printed: the commit was done
    assert re.fullmatch(rf"minires train: interrupted by SIGTERM after epoch 1/2; {tmp_path} holds epoch 1: resume with: "
                        rf"minires train .* --out {tmp_path} --resume", err.splitlines()[-1])
    assert assert_consistent(tmp_path) == 1 and not leftovers(tmp_path)


def test_an_interrupt_before_the_first_commit_says_to_start_again(data, tmp_path, capsys, monkeypatch):
    _signal_at_step(monkeypatch, 2, signal.SIGTERM)
    status, _, err = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", tmp_path)
    assert status == 143
    assert err.splitlines()[-1].startswith(f"minires train: interrupted by SIGTERM in epoch 1/2 at step 2/3; "
                                           f"{tmp_path} holds no epoch yet: start again with: minires train ")
    assert not err.splitlines()[-1].endswith("--resume") and assert_consistent(tmp_path) == 0


@pytest.mark.parametrize("where, extra, message", [
    ("manual_seed", [], "before training began"),  # prepare() seeds just before making the model
    ("evaluate", ["--eval-only"], "in the evaluation"),
])
def test_an_interrupt_outside_training(where, extra, message, data, straight, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    real = getattr(minires.train, where)
    monkeypatch.setattr(minires.train, where, interrupted)
    status, _, err = _train(capsys, *TINY, "--data", data, "--out", _copy_run(straight[0], tmp_path),
                            *(extra or ["--resume", "--epochs", "3"]))
    assert status == 130 and err == f"minires train: interrupted by SIGINT {message}\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_real_process(signum, data, tmp_path):
    """``python -m minires train`` sent a real signal once its first epoch is saved: one line on
    stderr (no traceback) with the command to resume, by this executable; exit status 128 + signal."""
    proc = subprocess.Popen([sys.executable, "-m", "minires", "train", *TINY, "--data", data, "--epochs", "50",
                             "--out", str(tmp_path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("epoch 1/50: ")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    name = signal.Signals(signum).name
    python = os.path.basename(sys.executable)
    assert proc.returncode == 128 + signum
    assert re.fullmatch(rf"minires train: interrupted by {name} (in epoch \d+/50 at step \d/3|in epoch \d+/50, in its test "
                        rf"pass|after epoch \d+/50); {tmp_path} holds epoch \d+: resume with: {python} -m minires train "
                        rf"--data {data} --epochs 50 .* --out {tmp_path} --resume", err.splitlines()[-1]), err[-2000:]
    assert "Traceback" not in err
    assert assert_consistent(tmp_path) >= 1 and not leftovers(tmp_path)


def test_resume_extends_a_finished_run(data, straight, tmp_path, capsys):
    """1 epoch, then --resume --epochs 2: the same as 2 epochs straight."""
    assert _train(capsys, *TINY, "--data", data, "--epochs", "1", "--out", tmp_path)[0] == 0
    assert _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", tmp_path, "--resume")[0] == 0
    assert_same_run(straight[0], tmp_path)


def test_eval_only(data, straight, capsys):
    status, out, _ = _train(capsys, *TINY, "--data", data, "--out", straight[0], "--eval-only")
    best = minires.load(straight[0] / "best.npz")["history"]
    assert status == 0
    assert out.strip().endswith(f"test accuracy {max(best['test_acc']):.1%}")
    assert f"test loss {best['test_loss'][int(np.argmax(best['test_acc']))]:.4f}" in out


def _snapshot(folder):
    """Every name under folder: a link's target, a file's bytes; None for no folder."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


def _copy_run(source, tmp_path):
    return Path(shutil.copytree(source, tmp_path / "run", symlinks=True))


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
    "warmup too long": (["--warmup-epochs", "5"], r"--warmup-epochs must be in \[0, --epochs=2\), got 5.0$", False),
    "warmup nan": (["--warmup-epochs", "nan"], r"--warmup-epochs must be in \[0, --epochs=2\), got nan$", False),
    "lr nan": (["--lr", "nan"], r"--lr must be a finite number above 0, got nan$", False),
    "lr inf": (["--lr", "inf"], r"--lr must be a finite number above 0, got inf$", False),
    "lr 0": (["--lr", "0"], r"--lr must be a finite number above 0, got 0.0$", False),
    "weight decay nan": (["--weight-decay", "nan"], r"--weight-decay must be a finite number, at least 0, got nan$", False),
    "weight decay negative": (["--weight-decay", "-1"], r"--weight-decay must be a finite number, at least 0, got -1.0$",
                              False),
    "momentum 5": (["--momentum", "5"], r"--momentum must be in \[0, 1\), got 5.0$", False),
    "momentum nan": (["--momentum", "nan"], r"--momentum must be in \[0, 1\), got nan$", False),
    "epochs 0": (["--epochs", "0"], r"--epochs must be at least 1, got 0$", False),
    "seed negative": (["--seed", "-1"], r"--seed must be at least 0, got -1$", False),
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
    assert status == 2, err
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
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr == "minires train: error: --batch-size must be at least 1, got 0\n"


def test_one_epoch_with_the_default_warmup(data, tmp_path, capsys):
    """--epochs 1 without --warmup-epochs: the warmup default (1 epoch) shrinks to half the run."""
    status, out, err = _train(capsys, "--data", data, "--batch-size", "16", "--epochs", "1", "--out", tmp_path)
    assert status == 0, err
    assert out.startswith("epoch 1/1: ") and assert_consistent(tmp_path) == 1
    scheduler = minires.load(tmp_path / "last.npz")["scheduler"]
    assert scheduler["_milestones"] == [2]  # round(0.5 * 3 batches): the warmup's end


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = re.split(r"\n  (?=-)", capsys.readouterr().out.split("options:")[1])[1:]  # one entry an option
    options = {o.split()[0].rstrip(","): " ".join(o.split()) for o in options}
    assert len(options) == 22 and all("default: " in text for option, text in options.items() if option != "-h")
    for option, default in [("--model", "resnet18"), ("--epochs", "12"), ("--batch-size", "64"),
                            ("--lr", "0.02 sgd, 0.001 adamw"), ("--momentum", "0.9"), ("--nesterov", "off"),
                            ("--weight-decay", "0.0005 sgd, 0.05 adamw"), ("--schedule", "cosine"),
                            ("--warmup-epochs", "1, or half of --epochs if less"), ("--seed", "0"), ("--optimizer", "sgd"),
                            ("--device", "cpu"), ("--out", "the first free runs/train-N")]:
        assert options[option].endswith(f"default: {default})"), options[option]


def test_a_non_finite_loss_stops_the_run(data, tmp_path, capsys):
    """--lr 1e30: the first step makes the weights huge, the second's loss is not finite: exit status
    3, one line naming where and why, nothing saved."""
    status, _, err = _train(capsys, *TINY, "--lr", "1e30", "--data", data, "--epochs", "2", "--out", tmp_path)
    assert status == 3 and "Warning" not in err
    assert re.fullmatch(rf"minires train: error: the training loss is (nan|inf) in epoch 1/2 at step 2/3: likely a "
                        rf"learning rate too high for this model and batch size \(--lr 1e\+30\), or data that is not "
                        rf"finite; --detect-anomaly names the op that first makes a NaN or an infinity; {tmp_path} holds "
                        rf"no epoch yet", err.splitlines()[-1]), err
    assert assert_consistent(tmp_path) == 0


def test_a_non_finite_loss_leaves_the_last_commit(data, straight, tmp_path, capsys, monkeypatch):
    """Weights made NaN by the 4th step (the first of epoch 2): the 5th step's loss stops the run
    before its own step; OUT keeps epoch 1 as the uninterrupted run saved it."""
    steps, step = [], SGD.step

    def poisoning_step(self):
        step(self)
        steps.append(1)
        if len(steps) == 4:
            self.param_groups[0]["params"][0].data[...] = np.nan

    monkeypatch.setattr(SGD, "step", poisoning_step)
    status, _, err = _train(capsys, *TINY, "--data", data, "--epochs", "2", "--out", tmp_path)
    assert status == 3 and re.search(rf"the training loss is nan in epoch 2/2 at step 2/3: .*; {tmp_path} holds epoch 1$",
                                     err.splitlines()[-1]), err
    assert assert_consistent(tmp_path) == 1
    saved, straight_history = minires.load(tmp_path / "last.npz"), minires.load(straight[0] / "last.npz")["history"]
    assert saved["history"]["test_acc"] == straight_history["test_acc"][:1]


def test_a_non_finite_test_loss_is_not_saved(data, tmp_path, capsys):
    """One step an epoch (a batch of all 36 images) with --lr 1e30: its loss is finite, the weights
    it leaves are not, so the test loss is not either; the epoch is not committed."""
    status, _, err = _train(capsys, *TINY, "--batch-size", "64", "--lr", "1e30", "--data", data, "--epochs", "2",
                            "--out", tmp_path)
    assert status == 3
    assert re.fullmatch(rf"minires train: error: the test loss is (nan|inf) after epoch 1/2 \(its last steps made the "
                        rf"weights so\): likely .*; {tmp_path} holds no epoch yet", err.splitlines()[-1]), err
    assert assert_consistent(tmp_path) == 0


def test_detect_anomaly_names_the_op_and_module(data, tmp_path, capsys):
    status, _, err = _train(capsys, *TINY, "--lr", "1e30", "--data", data, "--epochs", "2", "--out", tmp_path,
                            "--detect-anomaly")
    assert status == 3
    assert re.fullmatch(rf"minires train: error: in epoch 1/2 at step 2/3: detect_anomaly: \w+ (forward|backward) "
                        rf"returned (nan|inf) values .*in (Fused)?ResNet's [\w.]+ \(\w+\).*; {tmp_path} holds no epoch yet",
                        err.splitlines()[-1]), err


def test_a_failed_write_stops_with_one_line(data, tmp_path, capsys, monkeypatch):
    def full_disk(state, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(minires.train, "save", full_disk)
    status, _, err = _train(capsys, *TINY, "--data", data, "--epochs", "1", "--out", tmp_path)
    assert status == 1
    assert err.splitlines()[-1] == (f"minires train: error: cannot save epoch 1 in {tmp_path}: [Errno 28] No space left "
                                    f"on device; {tmp_path} holds no epoch yet")
    assert assert_consistent(tmp_path) == 0


def test_the_next_run_removes_what_a_killed_one_left(data, straight, tmp_path, capsys):
    """Temporary files and uncommitted epoch folders (a kill during a commit, or during the cleanup
    after one) are removed by the next run in the folder, a resume or a new run."""
    run = _copy_run(straight[0], tmp_path)
    (run / ".epoch-3").mkdir()
    (run / ".epoch-3" / "last.npz.1a2b3c4d.tmp").write_bytes(b"half")
    (run / ".epoch-1").mkdir()
    (run / "best.npz.5e6f7a8b.tmp").write_bytes(b"half")  # as an older minires left them
    os.symlink(".epoch-3", run / ".current.tmp")
    assert _train(capsys, *TINY, "--data", data, "--epochs", "3", "--out", run, "--resume")[0] == 0
    assert assert_consistent(run) == 3 and not leftovers(run)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".epoch-1").mkdir()
    (fresh / "last.npz.0f0f0f0f.tmp").write_bytes(b"half")
    os.symlink(".current/last.npz", fresh / "last.npz")  # a kill during the first commit leaves these
    assert _train(capsys, *TINY, "--data", data, "--epochs", "1", "--out", fresh)[0] == 0
    assert assert_consistent(fresh) == 1 and not leftovers(fresh)


def test_resume_a_run_saved_as_plain_files(data, straight, tmp_path, capsys):
    """A run folder of an older minires (the four outputs as plain files) resumes, its outputs
    becoming links into the committed epoch."""
    run = tmp_path / "old"
    run.mkdir()
    for name in OUTPUTS:
        shutil.copyfile(straight[0] / name, run / name)
    assert _train(capsys, *TINY, "--data", data, "--epochs", "3", "--out", run, "--resume")[0] == 0
    assert assert_consistent(run) == 3 and not leftovers(run)
    assert all(os.path.islink(run / name) for name in OUTPUTS)


def test_the_readme_loads_a_trained_model_back(data, straight, capsys):
    """The README's lines that load a checkpoint into a model, run on this run's best.npz (3 classes):
    the model scores what --eval-only reports."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_state_dict(minires.load(" in b)
    code = block.replace("runs/train-1", str(straight[0])).replace("num_classes=10", "num_classes=3")
    namespace = {}
    exec(code, namespace)
    source = minires.data.load_source(data)
    accuracy = evaluate(namespace["model"], minires.data.DataLoader(source.test, 16, transform=source.test_transform()),
                        "cpu")[1]
    assert _train(capsys, *TINY, "--data", data, "--out", straight[0], "--eval-only")[1].strip().endswith(
        f"test accuracy {accuracy:.1%}")


def test_single_colour_images_are_normalized(tmp_path):
    """Red images: the green and blue channels are constant (std 0), centred rather than divided by 0."""
    from PIL import Image

    for split in ("train", "test"):
        for c in range(2):
            (tmp_path / split / str(c)).mkdir(parents=True)
            for i in range(2):
                pixels = np.zeros((8, 8, 3), np.uint8)
                pixels[..., 0] = 50 + 100 * c + i
                Image.fromarray(pixels).save(tmp_path / split / str(c) / f"{i}.png")
    source = minires.data.load_source(f"folder:{tmp_path}")
    images = source.test_transform()(source.train.images)
    assert np.all(np.isfinite(images)) and np.all(images[:, 1:] == 0) and source.std[1:].tolist() == [1, 1]


def test_a_run_from_another_thread(data, tmp_path, capsys):
    """Only the main thread may set signal handlers: from another, a run leaves them as they are."""
    import threading

    handler, result = signal.getsignal(signal.SIGINT), []
    thread = threading.Thread(target=lambda: result.append(main(["train", "--data", data, "--batch-size", "0"])))
    thread.start()
    thread.join()
    assert result == [2] and signal.getsignal(signal.SIGINT) is handler
