"""minires.models: architectures, parameter counts, torchvision's state-dict layout, initialization,
loading weights, and whole-network checks against PyTorch (live when torch is installed, and
against committed golden files always) and against finite differences."""
import contextlib
import functools
import importlib.util
import os
import sys

import numpy as np
import pytest

import minires
from minires import functional as F
from minires import models, nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
import make_model_reference as reference  # noqa: E402
from make_model_reference import CASES, draw_batch, draw_state, run  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None

PARAMETER_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904, "wide_resnet50_2": 68_883_240,
}


def rel_err(a, b):
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


# --- architecture --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PARAMETER_COUNTS)
def test_parameter_counts_equal_torchvision(name):
    model = getattr(models, name)()
    assert sum(p.numel() for p in model.parameters()) == PARAMETER_COUNTS[name]


def test_resnet50_state_dict_layout():
    state = models.resnet50().state_dict()
    keys = list(state)
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert len(keys) == 320  # 53 convolutions, 53 batch norms (2 parameters, 3 buffers each), fc
    assert keys.index("layer1.0.bn3.num_batches_tracked") + 1 == keys.index("layer1.0.downsample.0.weight")
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: the 3x3 strides
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["fc.weight"].shape == (1000, 2048)
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    assert "layer1.1.downsample.0.weight" not in state and "layer3.5.bn3.bias" in state


def test_block_structure_and_strides():
    model = models.resnet50()
    block = model.layer2[0]
    assert isinstance(block, models.Bottleneck) and isinstance(models.BasicBlock(64, 64), nn.Module)
    assert (block.conv1.stride, block.conv2.stride, block.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))
    assert block.downsample[0].weight.shape == (512, 256, 1, 1) and model.layer2[1].downsample is None
    resnext = models.Bottleneck(256, 64, groups=32, base_width=4)  # resnext50_32x4d's layer1 width
    assert resnext.conv2.groups == 32 and resnext.conv2.weight.shape == (128, 4, 3, 3)
    assert models.Bottleneck(256, 64, base_width=128).conv2.weight.shape == (128, 128, 3, 3)  # wide_resnet50_2
    with pytest.raises(ValueError, match="BasicBlock"):
        models.BasicBlock(64, 64, groups=2)
    with pytest.raises(ValueError, match="layers"):
        models.ResNet(models.BasicBlock, [2, 2, 2])


def test_small_input_stem_keeps_keys():
    small, full = models.resnet18(num_classes=10, small_input=True), models.resnet18(num_classes=10)
    assert list(small.state_dict()) == list(full.state_dict())
    assert small.conv1.weight.shape == (64, 3, 3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    small.eval()
    with minires.no_grad():
        x = minires.Tensor(np.zeros((1, 3, 16, 16), np.float32))
        stem = small.maxpool(small.conv1(x))
        assert stem.shape == (1, 64, 16, 16)  # full resolution into layer1
        assert small.layer4(small.layer3(small.layer2(small.layer1(stem)))).shape == (1, 512, 2, 2)
        assert small(x).shape == (1, 10)


def test_initialization_as_torchvision():
    minires.manual_seed(0)
    model = models.resnet50()
    w = model.layer3[0].conv2.weight.numpy()  # kaiming_normal_, fan_out = 256 * 3 * 3
    assert abs(w.mean()) < 1e-3 and w.std() == pytest.approx(np.sqrt(2 / (256 * 9)), rel=0.02)
    assert all((m.weight.numpy() == 1).all() and (m.bias.numpy() == 0).all()
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bound = 1 / np.sqrt(2048)  # fc keeps Linear's default: U(-1/sqrt(in), 1/sqrt(in))
    assert 0.9 * bound < np.abs(model.fc.weight.numpy()).max() <= bound

    minires.manual_seed(0)  # the same seed draws the same weights; zero_init_residual changes BNs only
    zero = models.resnet50(zero_init_residual=True)
    assert np.array_equal(zero.layer3[0].conv2.weight.numpy(), w)
    assert all((b.bn3.weight.numpy() == 0).all() and (b.bn2.weight.numpy() == 1).all() for b in zero.modules()
               if isinstance(b, models.Bottleneck))
    assert all((b.bn2.weight.numpy() == 0).all() for b in models.resnet18(zero_init_residual=True).modules()
               if isinstance(b, models.BasicBlock))


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    model = models.resnet18(num_classes=10)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    state = draw_state({k: v.shape for k, v in before.items()}, seed=1)
    del state["layer2.0.bn1.running_var"]
    state["fc.weight"] = state["fc.weight"][:, :100]
    state["layer9.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "layer2.0.bn1.running_var" in message and "layer9.weight" in message and "fc.weight" in message
    assert all(np.array_equal(v.numpy(), before[k]) for k, v in model.state_dict().items())

    good = draw_state({k: v.shape for k, v in before.items()}, seed=1)  # NumPy float64 arrays, cast on load
    model.load_state_dict(good)
    loaded = model.state_dict()
    assert loaded["conv1.weight"].dtype == np.float32 and loaded["bn1.num_batches_tracked"].dtype == np.int64
    assert all(np.allclose(loaded[k].numpy(), v, rtol=1e-6) for k, v in good.items())


# --- whole networks against PyTorch (see tests/reference/make_model_reference.py) ------------------
# How minires runs the networks: as written (the default kernels and plans), fused (minires.fuse, as
# minires train runs them), and the plain version a student reads (NumPy kernels, the reference plan
# for every convolution).
ENGINES = {"default": ("numba", "fast", False), "fused": ("numba", "fast", True), "plain": ("numpy", "reference", False)}


@contextlib.contextmanager
def engine(name):
    kernels, plans, fused = ENGINES[name]
    before = minires.get_kernels(), minires.get_plans()
    minires.set_kernels(kernels), minires.set_plans(plans)
    try:
        yield (lambda model: minires.fuse(model)) if fused else (lambda model: model)
    finally:
        minires.set_kernels(before[0]), minires.set_plans(before[1])


@functools.lru_cache(maxsize=None)
def minires_results(case, dtype, engine_name="default"):
    arch, options, _, _ = CASES[case]
    with engine(engine_name) as prepare:
        return _minires_results(prepare(getattr(models, arch)(**options).to(dtype)), case, dtype)


def _minires_results(model, case, dtype):
    state, x, target = reference.inputs(case, {k: v.shape for k, v in model.state_dict().items()}, dtype)
    to_tensor = lambda a: minires.Tensor(a.astype(dtype) if a.dtype.kind == "f" else a)  # noqa: E731
    return run(model, state, x, target, lambda t: t.numpy(), to_tensor, F.cross_entropy)


@functools.lru_cache(maxsize=None)
def torch_results(case, check, dtype):
    return reference.torch_results(case, check, dtype)


def assert_within(errors, tolerances, names):
    """Each error at most its tolerance; the message lists the offenders (name, error, tolerance)."""
    errors, tolerances = np.broadcast_arrays(np.atleast_1d(errors), tolerances)
    bad = [(n, float(e), float(t)) for n, e, t in zip(names, errors, tolerances) if not e <= t]
    assert not bad, bad


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch (the golden-file test covers this without it)")
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case, dtype, engine_name):
    ours, ref = minires_results(case, dtype, engine_name), torch_results(case, dtype, "float64")
    tol, err = reference.TOL[dtype], reference.errors(ours, ref)
    for key in reference.OUTPUTS:
        assert_within(err[key], tol, [key])
    for group in ("grads", "buffers"):
        assert list(ours[group]) == list(ref[group])
        assert_within(err[group], tol, list(reference.floats(ref[group])))
        assert all(np.array_equal(ours[group][k], v) for k, v in ref[group].items() if v.dtype.kind != "f")


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_matches_golden_file(case, dtype, engine_name):
    file = minires.load(os.path.join(os.path.dirname(__file__), "reference", f"models_{case}.npz"))
    seed, ours, ref = CASES[case][3], minires_results(case, dtype, engine_name), file[dtype]
    tol = reference.TOL[dtype]
    assert file["seed"] == seed
    for key in reference.OUTPUTS:
        assert_within(reference.distance(ours[key], ref[key]) / np.linalg.norm(ref[key]), tol, [key])
    for group in ("grads", "buffers"):
        values, golden = reference.floats(ours[group]), ref[group]
        names = list(values)
        # |projection on a unit vector| <= norm, so a tensor within tolerance passes this check.
        projection_errors = np.abs(reference.projections(values, seed) - golden["projection"]) / golden["scale"]
        assert_within(projection_errors, tol, names)
        assert golden["full"]
        for k, v in golden["full"].items():
            i = names.index(k)
            assert_within(reference.distance(values[k], v) / golden["scale"][i], tol, [k])
        assert [int(v) for k, v in ours[group].items() if k not in values] == golden["int"]


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
@pytest.mark.parametrize("arch,options", [("resnet50", {}), ("resnext50_32x4d", {}),
                                          ("resnet18", {"small_input": True})])
def test_state_dict_identical_to_torch_and_torch_weight_files_load(arch, options, tmp_path):
    import torch
    from torch_resnet import torch_resnet

    torch_model = torch_resnet(arch, num_classes=10, **options)
    model = getattr(models, arch)(num_classes=10, **options)
    theirs, ours = torch_model.state_dict(), model.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(v.shape) and ours[k].dtype == v.numpy().dtype for k, v in theirs.items())

    state = draw_state({k: tuple(v.shape) for k, v in theirs.items()}, seed=7)
    torch_model.load_state_dict({k: torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v)
                                 for k, v in state.items()})
    torch.save(torch_model.state_dict(), tmp_path / "weights.pth")
    assert models.load_torch_weights(model, tmp_path / "weights.pth") == ([], [])
    assert all(np.array_equal(ours[k].numpy(), v.numpy()) for k, v in torch_model.state_dict().items())
    x = draw_batch((2, 3, 16, 16), 10, seed=7)[0].astype(np.float32)
    torch_model.eval(), model.eval()
    with torch.no_grad(), minires.no_grad():
        assert rel_err(model(minires.Tensor(x)).numpy(), torch_model(torch.from_numpy(x)).numpy()) < 1e-5


def test_load_torch_weights_without_torch_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match="'torch' package"):
        models.load_torch_weights(models.resnet18(), tmp_path / "weights.pth")


# --- whole tiny networks against finite differences --------------------------------------------------
def tiny_net(kind):
    """A residual net on 1x3x8x8 inputs with a few channels: a stem, two blocks (the second strides
    with a projection shortcut), pooling and a classifier of 3 outputs."""
    if kind == "basic":
        stem, width = 3, 4
        blocks = [models.BasicBlock(3, 3), models.BasicBlock(3, 4, 2, models.resnet.make_downsample(3, 4, 2))]
    else:  # the second bottleneck has two groups of 2 channels in its 3x3
        stem, width = 4, 8
        blocks = [models.Bottleneck(4, 1),  # identity shortcut: 4 = 1 * expansion
                  models.Bottleneck(4, 2, 2, models.resnet.make_downsample(4, 8, 2), groups=2)]
    return nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3)).double()


@pytest.mark.parametrize("fused", [False, True], ids=["as-written", "fused"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_gradcheck_whole_residual_network(kind, mode, fused):
    minires.manual_seed(3)
    net = minires.fuse(tiny_net(kind)) if fused else tiny_net(kind)
    net.load_state_dict(draw_state({k: v.shape for k, v in net.state_dict().items()}, seed=3))  # non-trivial BNs
    net.train(mode == "train")
    params = list(net.parameters())
    x = minires.Tensor(np.random.default_rng(3).standard_normal((1, 3, 8, 8)), requires_grad=True)
    # The parameters are gradcheck inputs themselves: gradcheck perturbs their data in place. Training
    # mode (batch statistics) gets full Jacobians for everything; eval mode for the input, and one
    # random projection per parameter.
    assert minires.gradcheck(lambda x, *params: net(x), [x, *params], atol=1e-6, rtol=1e-5, fast_mode=mode == "eval")
    if mode == "eval":
        assert minires.gradcheck(net, [x], atol=1e-6, rtol=1e-5)
