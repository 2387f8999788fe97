"""The device seam: a test-only device (tests/testdev.py) with its own arrays, array module,
convolution plan and kernel runs a ResNet-18 training step through the unchanged engine, and gets
the CPU's numbers."""
import os

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import models

import testdev


@pytest.fixture(scope="module", autouse=True)
def device():
    testdev.install()


def step(device, dtype=np.float64):
    """One SGD step of a small-input ResNet-18 on ``device``: (loss, logits, grads, new params) on
    the host, and every array the step left on the model (to check where they live)."""
    minires.manual_seed(0)
    model = models.resnet18(num_classes=5, small_input=True).to(dtype).to(device)
    opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((4, 3, 8, 8)).astype(dtype)).to(device)
    target = minires.tensor(rng.integers(0, 5, 4)).to(device)
    logits = model(x)
    loss = F.cross_entropy(logits, target)
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    opt.step()
    arrays = [t.data for t in model.state_dict().values()] + [p.grad.data for p in model.parameters()]
    return loss.item(), logits.numpy(), grads, {k: v.numpy() for k, v in model.state_dict().items()}, arrays


def test_resnet18_training_step_runs_on_the_test_device_with_its_own_plan_and_kernel():
    testdev.calls.update(plan=0, relu_backward=0)
    loss, logits, grads, params, arrays = step(testdev.NAME)
    assert testdev.calls == {"plan": 20, "relu_backward": 17}  # 20 convolutions; ReLUs: stem 1 + 8 blocks x 2
    assert all(type(a) is testdev.TestArray for a in arrays)  # nothing fell off the device
    cpu_loss, cpu_logits, cpu_grads, cpu_params, _ = step("cpu")
    np.testing.assert_allclose(loss, cpu_loss, rtol=1e-12)
    np.testing.assert_allclose(logits, cpu_logits, rtol=1e-10, atol=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], cpu_grads[k], rtol=1e-8, atol=1e-10 * np.abs(cpu_grads[k]).max(), err_msg=k)
    for k in params:
        np.testing.assert_allclose(params[k], cpu_params[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_explain_shows_the_devices_plan():
    model = models.resnet18(num_classes=5, small_input=True).to(testdev.NAME)
    rows = minires.explain(model, (2, 3, 8, 8), device=testdev.NAME)
    assert {r.plan for r in rows} == {"testdev im2col+gemm"} and rows[0].why == "the test device's only plan"


def test_tensors_move_and_gradients_come_back():
    x = minires.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to(testdev.NAME)
    assert y.device == testdev.NAME and x.to("cpu") is x
    (y * y).sum().backward()
    assert x.grad.device == "cpu" and np.array_equal(x.grad.numpy(), 2 * np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match=r"Mul: all tensors must be on one device, got \['cpu', 'testdev'\]"):
        x * y
    with pytest.raises(TypeError, match=r"Tensor.to: .tpu. is neither a device nor a dtype"):
        x.to("tpu")


def test_the_ops_name_no_device():
    """No op branches on a device: the words 'cuda', 'cupy' and 'testdev' appear in no op's code."""
    ops = os.path.join(os.path.dirname(minires.__file__), "ops")
    for name in os.listdir(ops):
        if name.endswith(".py"):
            with open(os.path.join(ops, name)) as f:
                text = f.read().lower()
            assert not any(word in text for word in ("testdev", "cupy", "cuda")), name
