"""The networks to study: plain twins, ResNet v1, the CIFAR ResNets of the 2015 paper and the
pre-activation ResNets: parameter counts against the published figures, multiply-adds, block
structure, option A's zero-padding shortcut, and a tiny forward/backward of each family, as written
and fused."""
import argparse

import numpy as np
import pytest

import minires
from minires import functional as F
from minires import models, nn
from minires.summary import add_arguments, run

# exact counts (10 classes for CIFAR, 1000 for ImageNet) and the paper's rounded figure in millions
CIFAR_PUBLISHED = {  # He et al. 2015, Table 6 (option A shortcuts)
    "resnet20": (269_722, "0.27"), "resnet32": (464_154, "0.46"), "resnet44": (658_586, "0.66"),
    "resnet56": (853_018, "0.85"), "resnet110": (1_727_962, "1.7"),
}
PREACT_PUBLISHED = {  # He et al. 2016, CIFAR-10 table (projection shortcuts)
    "preact_resnet110": (1_730_714, "1.7"), "preact_resnet164": (1_704_154, "1.7"),
}
IMAGENET = {  # torchvision's counts (tests/test_models.py); the plain twins lose the projections
    "plain18": 11_515_688, "plain34": 21_623_848, "plain50": 22_780_456, "plain101": 41_772_584,
    "plain152": 57_416_232, "resnet50_v1": 25_557_032, "resnet101_v1": 44_549_160, "resnet152_v1": 60_192_808,
    "preact_resnet18": 11_689_512, "preact_resnet34": 21_797_672, "preact_resnet50": 25_557_032,
    "preact_resnet101": 44_549_160, "preact_resnet152": 60_192_808,
}


def count(model):
    return sum(p.numel() for p in model.parameters())


def rounded(n, published):
    """n in millions, rounded as the paper prints ``published``."""
    decimals = len(published.split(".")[1])
    return f"{n / 1e6:.{decimals}f}"


@pytest.mark.parametrize("name", CIFAR_PUBLISHED)
def test_cifar_resnets_match_table_6(name):
    n, published = CIFAR_PUBLISHED[name]
    assert count(getattr(models, name)()) == n and rounded(n, published) == published
    plain = getattr(models, name.replace("resnet", "plain"))()
    assert count(plain) == n  # option A has no parameters, so the plain twin has the same
    assert not any(isinstance(m, models.ZeroPadShortcut) for m in plain.modules())
    # option B adds a 1x1 projection + BN at each of the two stage changes: 16->32 and 32->64
    assert count(getattr(models, name)(shortcut="B")) == n + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


@pytest.mark.parametrize("name", PREACT_PUBLISHED)
def test_preact_cifar_resnets_match_the_paper(name):
    n, published = PREACT_PUBLISHED[name]
    assert count(getattr(models, name)()) == n and rounded(n, published) == published


def test_preact_resnet1001_and_the_papers_10_2_m():
    """10,328,602 parameters; the paper's 10.2 M matches its convolution and fc weights alone
    (10,178,490), without the batch norms' 150,112."""
    model = models.preact_resnet1001()
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d)) + 64 * 4 * 10 + 10
    assert count(model) == 10_328_602 and weights == 10_178_490 and rounded(weights, "10.2") == "10.2"


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_variants_parameter_counts(name):
    model = getattr(models, name)()
    assert count(model) == IMAGENET[name]
    if name.startswith("plain"):  # ResNet's count less its projection shortcuts'
        twin = getattr(models, name.replace("plain", "resnet"))()
        projections = sum(count(m.downsample) for m in twin.modules() if getattr(m, "downsample", None) is not None)
        assert count(model) == count(twin) - projections
        assert all(getattr(m, "downsample", None) is None and m.plain for m in model.modules() if hasattr(m, "plain")
                   and not isinstance(m, models.ResNet))


def test_v1_strides_on_the_first_1x1_and_costs_fewer_macs():
    v1, v15 = models.resnet50_v1(), models.resnet50()
    assert (v1.layer2[0].conv1.stride, v1.layer2[0].conv2.stride) == ((2, 2), (1, 1))
    assert (v15.layer2[0].conv1.stride, v15.layer2[0].conv2.stride) == ((1, 1), (2, 2))
    assert list(v1.state_dict()) == list(v15.state_dict())  # same layers, same shapes: only strides move
    s1 = minires.summary(v1, (3, 224, 224), print_table=False)
    assert s1.total_macs == 3_857_973_248  # the paper's "3.8 x 10^9 FLOPs"; v1.5: 4,089,184,256
    # the difference: the first 1x1 of stages 2-4's first block, which v1.5 runs at all the input's
    # positions (56x56, 28x28, 14x14) and v1 at one in four; the 3x3s cost the same in both
    v15_conv1 = [256 * 128 * 56 * 56, 512 * 256 * 28 * 28, 1024 * 512 * 14 * 14]
    assert 4_089_184_256 - s1.total_macs == sum(m * 3 // 4 for m in v15_conv1) == 231_211_008
    assert s1.row("layer2.0.conv1")["macs"] == 256 * 128 * 28 * 28


def cifar_macs(n):
    """Multiply-adds of the 6n + 2 network at 32x32: every 3x3 convolution but the stem and the two
    widening ones costs 16 * 16 * 9 * 32 * 32 = 2,359,296 (width doubles as the area quarters)."""
    stem, widening, fc = 16 * 3 * 9 * 32 * 32, 32 * 16 * 9 * 16 * 16, 64 * 10
    return stem + 2 * widening + (6 * n - 2) * 16 * 16 * 9 * 32 * 32 + fc


def test_cifar_macs():
    assert cifar_macs(3) == 40_551_040 and cifar_macs(18) == 252_887_680
    for name, n in (("resnet20", 3), ("plain20", 3), ("resnet110", 18), ("preact_resnet110", 18)):
        shortcut_macs = 16 * 32 * 16 * 16 + 32 * 64 * 8 * 8 if name.startswith("preact") else 0  # option B
        s = minires.summary(getattr(models, name)(), (3, 32, 32), print_table=False)
        assert s.total_macs == cifar_macs(n) + shortcut_macs


def test_plain_block_has_no_shortcut():
    x = minires.Tensor(np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32))
    for block in (models.BasicBlock(4, 4), models.Bottleneck(4, 1), models.PreActBasicBlock(4, 4)):
        plain = type(block)(*((4, 4) if block.expansion == 1 else (4, 1)), plain=True)
        plain.load_state_dict(block.state_dict())
        for m in (block, plain):
            m.eval()
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    conv.weight.data[...] = 0  # F(x) = relu(bias 0) = 0 (or 0 before the addition)
        with minires.no_grad():
            assert np.abs(plain(x).numpy()).max() == 0
            expected = x.numpy() if isinstance(block, models.PreActBasicBlock) else np.maximum(x.numpy(), 0)
            np.testing.assert_array_equal(block(x).numpy(), expected)
    with pytest.raises(ValueError, match="plain block has no shortcut"):
        models.BasicBlock(4, 8, 2, models.resnet.make_downsample(4, 8, 2), plain=True)
    with pytest.raises(ValueError, match="zero_init_residual"):
        models.ResNet(models.BasicBlock, [1, 1, 1, 1], plain=True, zero_init_residual=True)


def test_zero_pad_shortcut_forward_and_backward():
    x = minires.Tensor(np.arange(2 * 2 * 5 * 5, dtype=np.float64).reshape(2, 2, 5, 5), requires_grad=True)
    out = models.ZeroPadShortcut(2, 4, 2)(x)
    assert out.shape == (2, 4, 3, 3)  # 5x5 -> 3x3, as a stride-2 3x3 convolution with padding 1
    np.testing.assert_array_equal(out.numpy()[:, :2], x.numpy()[:, :, ::2, ::2])
    assert not out.numpy()[:, 2:].any()
    (out * out).sum().backward()
    expected = np.zeros_like(x.numpy())
    expected[:, :, ::2, ::2] = 2 * x.numpy()[:, :, ::2, ::2]
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert minires.gradcheck(lambda t: F.pad(t, (1, 0, 0, 2, 3, 1)), [minires.Tensor(
        np.random.default_rng(1).standard_normal((1, 2, 2, 3)), requires_grad=True)])
    assert F.pad(minires.Tensor(np.ones((1, 1), np.float32)), (1, 2), value=5.0).numpy().tolist() == [[5, 1, 5, 5]]
    with pytest.raises(ValueError, match="pad: pad must be pairs"):
        F.pad(x, (1,))
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        models.resnet20(shortcut="C")


def tiny(family):
    """A one-block-per-stage network of ``family`` for 8x8 digits-sized inputs, 3 classes."""
    return {
        "plain": lambda: models.ResNet(models.BasicBlock, [1, 1, 1, 1], 3, small_input=True, plain=True),
        "v1": lambda: models.ResNet(models.BottleneckV1, [1, 1, 1, 1], 3, small_input=True),
        "cifar_a": lambda: models.CifarResNet(models.BasicBlock, [1, 1, 1], 3),
        "cifar_b": lambda: models.CifarResNet(models.Bottleneck, [1, 1, 1], 3, shortcut="B"),
        "plain_cifar": lambda: models.CifarResNet(models.BasicBlock, [1, 1, 1], 3, plain=True),
        "preact": lambda: models.PreActResNet(models.PreActBottleneck, [1, 1, 1, 1], 3, small_input=True),
        "preact_cifar": lambda: models.PreActCifarResNet(models.PreActBasicBlock, [1, 1, 1], 3, shortcut="A"),
    }[family]()


@pytest.mark.parametrize("family", ["plain", "v1", "cifar_a", "cifar_b", "plain_cifar", "preact", "preact_cifar"])
def test_tiny_forward_backward_written_and_fused(family):
    minires.manual_seed(0)
    model = tiny(family)
    fused = minires.fuse(model)
    assert type(fused).__name__.startswith("Fused")
    rng = np.random.default_rng(0)
    x = minires.Tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    y = minires.Tensor(np.array([0, 1, 2, 1]))
    results = []
    for m in (model, fused):
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        grads = [p.grad.numpy() for p in m.parameters()]
        assert all(np.isfinite(g).all() for g in grads) and np.abs(grads[0]).sum() > 0  # reaches the stem
        results.append((loss.item(), grads))
    assert abs(results[0][0] - results[1][0]) < 1e-5
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_summary_command_takes_the_new_models(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["resnet56", "--depth", "1"])) == 0
    out = capsys.readouterr().out
    assert "Total params: 853,018" in out and "(1, 64, 8, 8)" in out and "(1, 10)" in out
    assert run(parser.parse_args(["preact_resnet20", "--small-input"])) == 2
    assert "--small-input" in capsys.readouterr().err
