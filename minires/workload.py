"""One zoo model stepped on one batch: what ``minires profile`` and ``minires compare`` measure.

A Workload is the model (fused, as ``minires train`` runs it), SGD with momentum 0.9, and a batch of
standard-normal images with random labels, all on one device. train_step() is a training step
(forward, cross-entropy, backward, optimizer step), infer_step() an eval-mode forward without a
graph; both wait for the GPU before returning, so a step's time is its work's.
"""
import time

import numpy as np

from . import functional as F
from . import models
from .autograd.tensor import Tensor, no_grad
from .device import get_device
from .fusion import fuse
from .optim import SGD
from .random import manual_seed
from .study import UsageError, _number


class Workload:
    def __init__(self, name, batch, size, device="cpu", small_input=False):
        try:
            xp = get_device(device).xp
            manual_seed(0)
            model = models.build(name, small_input=small_input)
        except (ValueError, RuntimeError) as e:
            raise UsageError(e) from None
        self.name, self.batch, self.size, self.device = name, batch, size, device
        self.model = fuse(model, inplace=True)
        self.model.to(device)
        self.optimizer = SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        rng = np.random.default_rng(0)
        classes = self.model.fc.out_features
        self.x = Tensor(xp.asarray(rng.standard_normal((batch, 3, size, size)).astype(np.float32)))
        self.y = Tensor(xp.asarray(rng.integers(0, classes, batch)))
        if device == "cuda":
            from . import cuda
            self.wait = cuda.synchronize
        else:
            self.wait = lambda: None

    def train_step(self):
        self.model.train()
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.wait()

    def infer_step(self):
        self.model.eval()
        with no_grad():
            self.model(self.x)
        self.wait()

    def step_function(self, training):
        """The training step or the inference, after one untimed run of it (Numba's compiling, the
        memory pools' first allocations); a too-small image for the model is a UsageError."""
        step = self.train_step if training else self.infer_step
        try:
            step()
        except ValueError as e:
            raise UsageError(f"{self.name} at {self.size}x{self.size}: {e}") from None
        return step

    def images_per_second(self, training, steps):
        """Images per second of the median of ``steps`` timed steps (after the untimed one)."""
        step = self.step_function(training)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return self.batch / float(np.median(times))


def add_arguments(parser, batch, steps):
    """The options both commands share: --batch, --size, --device, --steps, --small-input."""
    parser.add_argument("--batch", default=str(batch), help=f"images per step (default: {batch})")
    parser.add_argument("--size", default=None, help="image height and width (default: 224; 32 for the CIFAR networks)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--steps", default=str(steps), help=f"timed steps, after an untimed one (default: {steps})")
    parser.add_argument("--small-input", action="store_true", help="the 3x3 stem without max-pool, for small images")


def numbers(args, names):
    """(batch, size, steps) from the shared options, checked (a UsageError names the bad one). The
    default size is 32 when every model in ``names`` is a CIFAR network, else 224."""
    for name in names:
        if name not in models.ARCHITECTURES:
            raise UsageError(f"unknown model {name!r}: expected one of {', '.join(models.ARCHITECTURES)}")
    default = "32" if all(models.is_cifar(n) for n in names) else "224"
    return (_number("--batch", args.batch, int, 1), _number("--size", args.size or default, int, 1),
            _number("--steps", args.steps, int, 1))
