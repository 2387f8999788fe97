"""``minires compare``: parameters, multiply-adds, measured throughput, peak memory and published top-1
per model, on tiny cases; bad input stops with one line and exit status 2 before anything runs."""
import importlib.util
from pathlib import Path

import pytest

from minires import cli, models
from minires.compare import PUBLISHED_TOP1, measure, table
from test_profiler import usage_error


def test_compare_command(tmp_path, capsys):
    png = tmp_path / "c.png"
    assert cli.main(["compare", "resnet18", "resnet20", "--size", "32", "--batch", "2", "--steps", "1",
                     "--out", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    resnet18, resnet20 = lines[header + 1].split(), lines[header + 2].split()
    assert resnet18[:3] == ["resnet18", "11.69", "0.038"]  # 11,689,512 parameters; 37.5 M MACs at 32x32
    assert resnet18[-2:] == ["69.758", "ResNet18_Weights.IMAGENET1K_V1"]
    assert resnet20[:2] == ["resnet20", "0.27"] and lines[header + 2].endswith("(none published)")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measure_row():
    row = measure("resnet20", batch=2, size=32, steps=1, device="cpu", small_input=False)
    assert row["params"] == 269_722 and row["macs"] == 40_551_040  # the 2015 paper's 0.27 M parameters
    assert row["train"] > 0 and row["infer"] > row["train"] / 10 and row["peak"] > 0 and row["top1"] == {}
    text = table([row])
    assert "resnet20" in text.splitlines()[1] and "(none published)" in text


def test_published_figures_name_real_models_and_weights():
    for name, figures in PUBLISHED_TOP1.items():
        assert name in models.ARCHITECTURES and not models.is_cifar(name)
        for weights, top1 in figures.items():
            assert weights.endswith(("IMAGENET1K_V1", "IMAGENET1K_V2")) and 60 < top1 < 90
    assert PUBLISHED_TOP1["resnet50"]["ResNet50_Weights.IMAGENET1K_V2"] == 80.858


@pytest.mark.parametrize("argv, message", [
    (["resnet19"], "unknown model 'resnet19'"),
    (["resnet18", "resnet18"], "a model is named twice"),
    (["resnet18", "--batch", "two"], "--batch must be an integer of at least 1, got 'two'"),
    (["resnet18", "--size", "0"], "--size"),
    (["resnet18", "--steps", "0"], "--steps"),
    (["resnet18", "--device", "tpu"], "unknown device 'tpu'"),
    (["resnet20", "--small-input", "--size", "32", "--steps", "1"], "resnet20 has only the small-input stem"),
    (["resnet18", "--out", "/no/such/folder/c.png"], "the folder /no/such/folder does not exist"),
])
def test_compare_bad_input(argv, message, capsys, tmp_path, monkeypatch):
    assert message in usage_error("compare", argv, capsys, tmp_path, monkeypatch)


def test_readme_gives_the_table_figures():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, figures in PUBLISHED_TOP1.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        assert all(f"{top1:.3f}" in row for top1 in figures.values()), row


def test_without_matplotlib_nothing_runs(capsys, tmp_path, monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find(name, *a))
    assert "matplotlib is needed" in usage_error("compare", ["resnet18"], capsys, tmp_path, monkeypatch)
