"""The GPU backend (marked gpu; `python -m minires.cuda.check` runs these): on the "cuda" device when
a GPU is there, else on the test device "cudacpu", which runs the same path (minires.cuda.install:
the CUDA kernels' wrappers and the GPU's plans) with the .cu kernels compiled for the CPU
(tests/cuda_cpu/). Every op case and its gradients against the CPU, gradcheck on the device, whole
training steps against the CPU, and a ``minires train --device`` run (its batches prefetched: copies
overlapped with compute); on a real GPU also against PyTorch CUDA and a long loop's memory."""
import csv

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import models
from minires.cli import main
from op_cases import CASES, minires_inputs, upstream_grad
from train_runs import TINY, make_image_folder

pytestmark = pytest.mark.gpu
ON_GPU = minires.cuda.is_available()
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU: the test device has no memory pool or timing")


@pytest.fixture(scope="module")
def device():
    if ON_GPU:
        return "cuda"
    from cuda_cpu import device as cudacpu
    cudacpu.install()
    return cudacpu.NAME


def run(case, dtype, device):
    """The case's outputs and input gradients (host arrays), its ops on ``device``: the inputs are
    CPU leaves moved there (so the gradients come back through the move)."""
    inputs = minires_inputs(case, dtype)
    outs = case.fn(F, *[x.to(device) for x in inputs])
    outs = outs if isinstance(outs, tuple) else (outs,)
    grad = minires.tensor(upstream_grad(case, outs[0].shape, dtype)).to(device)
    outs[0].backward(grad.data)
    results = {f"out{k}": o.numpy() for k, o in enumerate(outs)}
    results.update({f"grad{i}": x.grad.numpy() for i, x in enumerate(inputs) if x.grad is not None})
    return results


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_op_case_matches_the_cpu(case, dtype, device):
    ours, cpu = run(case, dtype, device), run(case, dtype, "cpu")
    assert sorted(ours) == sorted(cpu)
    for key, expected in cpu.items():
        scale = max(np.abs(expected).max(initial=0.0), 1e-30)
        error = np.abs(ours[key].astype(np.float64) - expected).max(initial=0.0) / scale
        assert error <= TOLERANCE[dtype], f"{case.name} {key}: relative error {error:.3g} on {device}"


GRADCHECK_CASES = [c for c in CASES if c.name.split("_")[0] in ("conv2d", "batch", "max", "avg", "adaptive", "cross")]


@pytest.mark.parametrize("case", GRADCHECK_CASES[::3], ids=lambda c: c.name)
def test_gradcheck_on_the_device(case, device):
    inputs = minires_inputs(case, np.float64)
    graded = [x for x in inputs if x.requires_grad]

    def fn(*xs):
        it = iter(xs)
        args = [next(it) if x.requires_grad else x for x in inputs]
        out = case.fn(F, *[a.to(device) for a in args])
        return (out[0] if isinstance(out, tuple) else out).to("cpu")
    assert minires.gradcheck(fn, graded, fast_mode=True)


def training_step(name, device, dtype=np.float64, shape=(2, 3, 16, 16)):
    """One SGD step of a small-input zoo model on ``device``: loss, logits and the new state (host)."""
    minires.manual_seed(0)
    model = minires.fuse(getattr(models, name)(num_classes=5, small_input=True).to(dtype)).to(device)
    opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal(shape).astype(dtype)).to(device)
    target = minires.tensor(rng.integers(0, 5, shape[0])).to(device)
    logits = model(x)
    loss = F.cross_entropy(logits, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), logits.numpy(), {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_training_step_matches_the_cpu(name, device):
    loss, logits, state = training_step(name, device)
    cpu_loss, cpu_logits, cpu_state = training_step(name, "cpu")
    np.testing.assert_allclose(loss, cpu_loss, rtol=1e-10)
    np.testing.assert_allclose(logits, cpu_logits, rtol=1e-9, atol=1e-10)
    for k, v in cpu_state.items():
        np.testing.assert_allclose(state[k], v, rtol=1e-8, atol=1e-10, err_msg=k)


def test_minires_train_on_the_device_matches_the_cpu(device, tmp_path, capsys):
    """One step of ``minires train`` (36 images, one batch; its copies through minires.data.prefetch and
    the device's copier) and its evaluation: the metrics of the CPU's run, to float32 rounding."""
    data = make_image_folder(tmp_path / "images")
    metrics = {}
    for where in (device, "cpu"):
        status = main(["train", *TINY, "--batch-size", "36", "--epochs", "1", "--data", data, "--out",
                       str(tmp_path / where), "--device", where])
        assert status == 0, capsys.readouterr().err
        with open(tmp_path / where / "metrics.csv") as f:
            metrics[where] = next(csv.DictReader(f))
    ours, cpu = metrics[device], metrics["cpu"]
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(float(ours[key]), float(cpu[key]), rtol=1e-4, err_msg=key)
    for key in ("train_acc", "test_acc"):  # a logit within rounding of another may flip one image
        assert abs(float(ours[key]) - float(cpu[key])) <= 1 / 12 + 1e-9, key


@needs_gpu
def test_training_step_matches_pytorch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    import torch_resnet
    minires.manual_seed(0)
    ours = models.resnet18(num_classes=5, small_input=True)
    theirs = torch_resnet.torch_resnet("resnet18", num_classes=5, small_input=True)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})
    ours, theirs = minires.fuse(ours).to("cuda"), theirs.cuda()
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    target = np.arange(8) % 5
    mine = F.cross_entropy(ours(minires.tensor(x).to("cuda")), minires.tensor(target).to("cuda"))
    mine.backward()
    ref = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x).cuda()), torch.from_numpy(target).cuda())
    ref.backward()
    np.testing.assert_allclose(mine.item(), ref.item(), rtol=1e-5)
    for (k, p), q in zip(ours.named_parameters(), theirs.parameters()):
        g = q.grad.cpu().numpy()
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-4, atol=1e-5 * np.abs(g).max(), err_msg=k)


@needs_gpu
def test_memory_pool_stays_flat_over_200_steps():
    model = minires.fuse(models.resnet18(num_classes=10, small_input=True)).to("cuda")
    opt = minires.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = minires.tensor(np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)).to("cuda")
    target = minires.tensor(np.arange(32) % 10).to("cuda")
    used = []
    for step in range(200):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 10:
            minires.cuda.synchronize()
            used.append(minires.cuda.memory_allocated())
    assert max(used) == min(used), f"memory in arrays moved from {min(used)} to {max(used)} bytes"
