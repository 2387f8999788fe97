"""Figures that popular write-ups about ResNet get wrong, asserted on the models themselves (the
README's "Common misstatements, corrected" lists them). Each test counts in the model, not in a
constant copied from the README."""
import pytest

import minires
from minires import models, nn


@pytest.fixture(scope="module")
def resnet50():
    return models.resnet50()


@pytest.fixture(scope="module")
def resnet50_summary(resnet50):
    return minires.summary(resnet50, (3, 224, 224), print_table=False)


def convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_resnet50_costs_4_1_g_multiply_adds_not_400_g_flops(resnet50_summary):
    macs = resnet50_summary.total_macs
    assert macs == 4_089_184_256           # 4.1 G multiply-adds at 224x224
    assert round(2 * macs / 1e9, 1) == 8.2  # 8.2 GFLOP, a multiply and an add each
    assert 2 * macs < 400e9 / 48            # "400 billion FLOPs" is ~50 times too many


def test_resnet50_stages_are_256_512_1024_2048_wide_and_the_feature_2048(resnet50, resnet50_summary):
    widths = [resnet50_summary.row(f"layer{i}")["output_shape"][1] for i in (1, 2, 3, 4)]
    assert widths == [256, 512, 1024, 2048]
    assert resnet50_summary.row("avgpool")["output_shape"] == (1, 2048, 1, 1) and resnet50.fc.in_features == 2048


def test_resnet50_stages_hold_3_4_6_3_bottlenecks_of_three_convolutions(resnet50):
    stages = [getattr(resnet50, f"layer{i}") for i in (1, 2, 3, 4)]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    for block in (b for s in stages for b in s):
        assert isinstance(block, models.Bottleneck)
        main_path = [m for name, m in block.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]
        assert [c.kernel_size for c in main_path] == [(1, 1), (3, 3), (1, 1)]


def test_the_stem_convolution_has_9408_weights_not_1792(resnet50):
    assert resnet50.conv1.weight.numel() == 64 * 3 * 7 * 7 == 9_408 and resnet50.conv1.bias is None
    with_bias = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
    assert sum(p.numel() for p in with_bias.parameters()) == 9_472
    three_by_three = nn.Conv2d(3, 64, 3, padding=1, bias=True)  # where the 1,792 comes from
    assert sum(p.numel() for p in three_by_three.parameters()) == 1_792


def test_resnet18_has_8_residual_blocks_not_18():
    blocks = [m for m in models.resnet18().modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 8  # 8 blocks x 2 convolutions + the stem + fc = 18 weighted layers


def test_resnet50_has_49_main_path_convolutions_4_projections_and_1_fc(resnet50):
    projections = [c for name, c in resnet50.named_modules() if isinstance(c, nn.Conv2d) and "downsample" in name]
    assert len(convs(resnet50)) - len(projections) == 49 and len(projections) == 4
    assert len([m for m in resnet50.modules() if isinstance(m, nn.Linear)]) == 1  # 49 + 1 = the "50"
