"""``minires study gradflow`` and ``minires study degradation`` on tiny runs (a few steps of the
20-layer CIFAR networks on digits), what the gradient-flow recorder notes, and the one-line errors."""
import csv
import os

import numpy as np
import pytest

import minires
from minires import cli, models
from minires import functional as F
from minires import study

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


def main(*argv):
    return cli.main(["study", *argv])


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, layers", [("resnet18", 18), ("resnet50", 50), ("resnet56", 56), ("plain56", 56),
                                          ("resnet20", 20), ("preact_resnet164", 164)])
def test_the_main_path_has_as_many_layers_as_the_name_says(name, layers):
    assert len(study.main_path(getattr(models, name)())) == layers  # projection shortcuts not counted


def test_layer_stats_note_what_backward_computes():
    minires.manual_seed(0)
    model = models.CifarResNet(models.BasicBlock, [1, 1, 1], num_classes=3)
    model.train()
    rng = np.random.default_rng(0)
    x = minires.Tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    y = np.array([0, 1, 2, 0])
    unrecorded = model(x).numpy()
    stats = study.LayerStats(model, "tiny", steps=[5])
    assert stats(4) is None
    with stats(5):
        logits = model(x)
        loss = F.cross_entropy(logits, minires.Tensor(y))
        loss.backward()
    assert all("forward" not in vars(m) for _, m in study.main_path(model))  # unwrapped again
    rows = {r["name"]: r for r in stats.rows}
    assert [r["layer"] for r in stats.rows] == list(range(1, 9)) and list(rows)[-1] == "fc"
    # dL/dlogits of the mean cross-entropy: (softmax - one-hot) / N
    p = np.exp(logits.numpy() - logits.numpy().max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(4), y] -= 1
    assert rows["fc"]["out_grad_norm"] == pytest.approx(np.linalg.norm(p / 4), rel=1e-5)
    assert rows["fc"]["act_std"] == pytest.approx(logits.numpy().std(), rel=1e-5)
    conv = model.layer2[0].conv2
    assert rows["layer2.0.conv2"]["grad_norm"] == pytest.approx(np.linalg.norm(conv.weight.grad.numpy()), rel=1e-5)
    np.testing.assert_array_equal(logits.numpy(), unrecorded)  # the probe is the identity


def test_gradflow_tiny(tmp_path, capsys):
    out = tmp_path / "gf"
    assert main("gradflow", "--models", "plain20,resnet20", "--steps", "3", "--batch-size", "32",
                "--out", str(out)) == 0
    rows = read_csv(out / "gradflow.csv")
    assert len(rows) == 2 * 3 * 20  # models x recorded steps (0, 1, 2) x layers
    assert {r["step"] for r in rows} == {"0", "1", "2"} and rows[0]["name"] == "conv1" and rows[19]["name"] == "fc"
    assert all(float(r["grad_norm"]) > 0 and float(r["out_grad_norm"]) > 0 for r in rows)
    assert is_png(out / "gradflow.png")
    text = capsys.readouterr().out
    assert "plain20: 20 layers" in text and "resnet20: 20 layers" in text


def test_degradation_tiny(tmp_path, capsys):
    out = tmp_path / "dg"
    assert main("degradation", "--models", "plain20,resnet20", "--steps", "3", "--batch-size", "32",
                "--out", str(out)) == 0
    rows = read_csv(out / "degradation.csv")
    assert [(r["model"], r["step"]) for r in rows] == [(m, str(i)) for m in ("plain20", "resnet20") for i in (1, 2, 3)]
    assert [r["test_error"] != "" for r in rows] == [False, False, True] * 2  # after the (partial) pass
    assert all(0 <= float(r["train_error"]) <= 1 for r in rows)
    assert is_png(out / "degradation.png")
    assert "resnet20: training error" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["gradflow", "--models", "plain18,resnet19"], "unknown model 'resnet19'"),
    (["gradflow", "--steps", "0"], "--steps must be an integer of at least 1, got '0'"),
    (["degradation", "--steps", "ten"], "--steps must be an integer of at least 1, got 'ten'"),
    (["degradation", "--lr", "nan"], "--lr must be a number"),
    (["degradation", "--data", "mnist"], "unknown dataset 'mnist'"),
    (["degradation", "--models", "resnet20,resnet20"], "names a model twice"),
    (["gradflow", "--records", "9", "--steps", "4"], "--records 9 is more than --steps 4"),
    (["degradation", "--warmup", "-1"], "--warmup must be an integer of at least 0, got '-1'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"minires study {argv[0]}: error: ") and message in err
    assert not os.path.exists(out)
