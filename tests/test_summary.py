"""minires.summary and ``minires summary``: layer table, parameters and multiply-accumulates (MACs
of convolutions and linear layers only), checked against the known ResNet numbers."""
import argparse

import numpy as np
import pytest

import minires
from minires import cli, models, nn
from minires.summary import ModelSummary, add_arguments, run


@pytest.fixture(scope="module")
def resnet50_summary():
    return minires.summary(models.resnet50(), (3, 224, 224), print_table=False)


def test_resnet50_at_224(resnet50_summary):
    s = resnet50_summary
    assert isinstance(s, ModelSummary)
    assert s.total_params == s.trainable_params == 25_557_032
    assert s.total_macs == 4_089_184_256
    assert abs(s.total_macs / 4.09e9 - 1) < 0.01
    assert s.input_shape == (1, 3, 224, 224) and s.output_shape == (1, 1000)
    assert s.row("conv1")["params"] == 9_408 and s.row("conv1")["output_shape"] == (1, 64, 112, 112)
    assert s.row("maxpool")["output_shape"] == (1, 64, 56, 56)
    assert s.row("layer4")["output_shape"] == (1, 2048, 7, 7)  # the last stage is 2048 wide, not 512
    assert s.row("layer4")["params"] == 14_964_736
    assert s.row("fc")["macs"] == 2048 * 1000 and s.row("fc")["params"] == 2_049_000
    # a container's MACs are its children's; the layers' sum is the total
    assert s.row("layer1")["macs"] == sum(s.row(f"layer1.{i}")["macs"] for i in range(3))
    assert sum(s.row(n)["macs"] for n in ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")) == s.total_macs
    conv = s.row("layer3.0.conv2")  # 3x3, stride 2: 256 -> 256 channels at 14x14
    assert conv["macs"] == 256 * 14 * 14 * 256 * 9 and conv["type"] == "Conv2d"
    # the model as written: each batch norm its own row, and each call of a block's ReLU module
    assert s.row("bn1")["type"] == s.row("layer1.0.bn3")["type"] == s.row("layer1.0.downsample.1")["type"] == "BatchNorm2d"
    assert sum(r["name"] == "layer1.0.relu" for r in s.rows) == 3 and s.row("relu")["macs"] == 0


def test_resnet18_at_224():
    s = minires.summary(models.resnet18(), (3, 224, 224), print_table=False)
    assert s.total_params == 11_689_512
    assert s.total_macs == 1_814_073_344 and abs(s.total_macs / 1.82e9 - 1) < 0.01
    assert s.row("conv1")["params"] == 9_408 and s.row("conv1")["macs"] == 118_013_952
    assert s.row("layer4")["output_shape"] == (1, 512, 7, 7)


def test_table_text_and_depth(resnet50_summary, capsys):
    text = resnet50_summary.table(depth=1)
    assert "layer4 (Sequential)" in text and "layer4.0" not in text
    assert "Total params: 25,557,032" in text and "4,089,184,256 (4.09 G)" in text
    assert "layer4.2.conv3 (Conv2d)" in str(resnet50_summary)
    minires.summary(models.resnet18(num_classes=10, small_input=True), (3, 32, 32), depth=2)
    out = capsys.readouterr().out
    assert "layer1.0 (BasicBlock)" in out and "(1, 64, 32, 32)" in out and "maxpool (Identity)" in out


def test_batch_scales_macs_and_model_is_left_as_it_was():
    model = models.resnet18(num_classes=10, small_input=True)
    model.train()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    one = minires.summary(model, (3, 16, 16), print_table=False)
    four = minires.summary(model, (4, 3, 16, 16), print_table=False)
    assert four.total_macs == 4 * one.total_macs and four.output_shape == (4, 10)
    assert model.training and model.layer1[0].bn1.training  # modes restored
    assert all(np.array_equal(v.numpy(), before[k]) for k, v in model.state_dict().items())  # BN stats untouched
    assert "forward" not in vars(model.layer1[0].conv1)  # the wrapper is gone


def test_summary_of_other_modules_and_bad_shapes():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    s = minires.summary(net, (2, 3, 4, 4), print_table=False)
    assert s.total_macs == 2 * (8 * 4 * 4 * 3 * 9 + 8 * 4 * 4 * 5) and s.total_params == 8 * 27 + 8 + 128 * 5 + 5
    grouped = minires.summary(nn.Sequential(nn.Conv2d(4, 8, 3, groups=2, bias=False)), (4, 5, 5), print_table=False)
    assert grouped.total_macs == 8 * 3 * 3 * (4 // 2) * 9
    with pytest.raises(ValueError, match="input_shape"):
        minires.summary(net, (3, 4))


def test_cli(capsys):
    assert cli.COMMANDS["summary"] == "minires.summary"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["resnet18", "--input", "3x64x64", "--depth", "1", "--num-classes", "10"])) == 0
    out = capsys.readouterr().out
    assert "fc (Linear)" in out and "(1, 10)" in out and "Total params: 11,181,642" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["resnet18", "--input", "3x64"])
    with pytest.raises(SystemExit):
        parser.parse_args(["resnet19"])
