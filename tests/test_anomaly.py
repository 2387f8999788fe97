"""minires.detect_anomaly(): the first op whose forward or backward makes a NaN or an infinity is
named, with the module it ran in; outside the context manager nothing is checked."""
import re

import numpy as np
import pytest

import minires
from minires import nn


def _leaf(*values):
    return minires.tensor(np.array(values, np.float32), requires_grad=True)


def test_forward_names_the_op():
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e, np.errstate(divide="ignore"):
        (_leaf(1.0, 2.0) - 1.0).log()  # log(0) = -inf
    assert str(e.value) == "detect_anomaly: Log forward returned inf values from finite inputs"


def test_backward_names_the_op():
    x = _leaf(0.0, 4.0)
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e, np.errstate(divide="ignore"):
        (x ** 0.5).sum().backward()  # d sqrt(x)/dx = inf at 0, from a finite forward
    assert str(e.value) == ("detect_anomaly: Pow backward returned inf values in its gradient for input 0 "
                            "from a finite gradient")


def test_a_non_finite_gradient_given_to_backward():
    y = _leaf(1.0, 2.0) * 3.0
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError, match=r"the gradient given to Mul backward "
                                                                             r"holds nan values"):
        y.backward(np.array([1.0, np.nan], np.float32))


def _net():
    minires.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))


def test_names_the_module_of_a_forward():
    net = _net()
    net[0].weight.data[...] = 1.0  # positive inputs for the second Linear ...
    net[1][1].weight.data[...] = 3e38  # ... whose products overflow float32
    x = minires.tensor(np.full((2, 3), 100.0, np.float32))
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e, np.errstate(over="ignore"):
        net(x)
    assert str(e.value) == "detect_anomaly: Linear forward returned inf values in Sequential's 1.1 (Linear) from finite inputs"


def test_names_non_finite_parameters():
    net = _net()
    net[0].bias.data[1] = np.nan
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e:
        net(minires.tensor(np.ones((2, 3), np.float32)))
    assert str(e.value) == ("detect_anomaly: Linear forward returned nan values in Sequential's 0 (Linear); its input 2 "
                            "already held nan values (data, or parameters no longer finite)")


class Sqrt(nn.Module):
    def forward(self, x):
        return x ** 0.5


def test_names_the_module_of_a_backward():
    net = nn.Sequential(nn.Linear(3, 2), Sqrt())
    net[0].weight.data[...] = net[0].bias.data[...] = 0  # sqrt(0): a finite forward, an infinite gradient
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e, np.errstate(divide="ignore"):
        net(minires.tensor(np.ones((1, 3), np.float32))).sum().backward()
    assert str(e.value) == ("detect_anomaly: Pow backward returned inf values in its gradient for input 0 in "
                            "Sequential's 1 (Sqrt) from a finite gradient")


def test_names_the_module_in_a_resnet():
    model = minires.models.resnet18(num_classes=3, small_input=True)
    model.layer2[0].conv1.weight.data[0, 0, 0, 0] = np.nan
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError) as e:
        model(x)
    assert re.fullmatch(r"detect_anomaly: \w+ forward returned nan values in ResNet's layer2\.0\.conv1 \(Conv2d\); "
                        r"its input 1 already held nan values \(data, or parameters no longer finite\)", str(e.value)), e.value


def test_off_by_default_and_after_the_block():
    with minires.detect_anomaly():
        pass
    with np.errstate(divide="ignore"):
        y = (_leaf(1.0, 2.0) - 1.0).log()  # no error: anomaly mode is off again
    assert np.isneginf(y.numpy()[0])


def test_the_module_stack_is_left_empty_after_an_error():
    from minires import anomaly
    net = _net()
    net[0].bias.data[0] = np.inf
    with minires.detect_anomaly(), pytest.raises(minires.AnomalyError):
        net(minires.tensor(np.ones((1, 3), np.float32)))
    assert anomaly._modules == []
