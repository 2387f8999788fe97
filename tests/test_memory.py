"""Training does not leak: the graph (and the arrays its nodes saved) is freed by backward, and a
training loop's memory stays flat after warm-up, measured by tracemalloc (NumPy reports its array
buffers to it) and by the process's resident set size."""
import contextlib
import gc
import os
import tracemalloc
import weakref

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import fusion
from minires import nn
from minires.ops import conv

WARMUP, STEPS = 5, 20


class ResidualNet(nn.Module):
    """conv-bn-relu-maxpool, a residual conv-bn block, global average pooling, linear."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))

    def forward(self, x):
        h = self.pool(self.relu(self.bn1(self.conv1(x))))
        h = self.relu(self.bn2(self.conv2(h)) + h)
        return self.head(h)


def _setup():
    minires.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ResidualNet()
    x = minires.tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    target = rng.integers(0, 10, size=8)
    optimizer = minires.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return model, x, target, optimizer


def _train(model, x, target, optimizer, steps, after_step):
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        after_step(step, loss)


@contextlib.contextmanager
def _gc_disabled():
    """Without the cycle collector, only reference counting frees memory: a graph that needed the
    collector (a reference cycle) would stay until an explicit gc.collect(), which counts it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _memory_after_warmup(measure):
    """Train STEPS steps with the cycle collector off; return measure() after steps WARMUP and STEPS,
    and the number of unreachable objects (reference cycles) that the steps in between left."""
    model, x, target, optimizer = _setup()
    memory, losses, cycles = {}, [], []

    def record(step, loss):
        losses.append(loss.item())
        if step in (WARMUP, STEPS):
            # a full collection also empties CPython's free lists of tuples, lists and dicts, which
            # otherwise fill up slowly and hold memory that tracemalloc counts as allocated
            cycles.append(gc.collect())
            memory[step] = measure()

    with _gc_disabled():
        _train(model, x, target, optimizer, STEPS, record)
    assert losses[-1] < losses[0]  # it did train
    return memory, cycles[-1]


def _graph_nodes(root):
    """Every node reachable from ``root``'s node, by walking the op inputs."""
    nodes, stack = [], [root._node]
    while stack:
        node = stack.pop()
        if node is not None and all(node is not n for n in nodes):
            nodes.append(node)
            stack.extend(t._node for t in node.inputs if t is not None)
    return nodes


def test_backward_releases_the_graph():
    model, x, target, _ = _setup()
    loss = F.cross_entropy(model(x), target)
    nodes = _graph_nodes(loss)
    assert len(nodes) > 10
    node_refs = [weakref.ref(n) for n in nodes[1:]]
    # what the nodes saved, less the input and the weights, which outlive the graph
    owned = {id(x.data)} | {id(t.data) for t in model.state_dict().values()}
    saved_refs = [weakref.ref(a) for n in nodes for a in getattr(n, "_saved", ())
                  if isinstance(a, np.ndarray) and id(a) not in owned]
    assert len(saved_refs) > 10
    del nodes
    with _gc_disabled():
        loss.backward()
        assert loss._node.inputs is None and "_saved" not in vars(loss._node)  # the root keeps nothing
        assert all(r() is None for r in node_refs), "graph nodes outlive backward"
        assert all(r() is None for r in saved_refs), "saved arrays outlive backward"
    assert all(p.grad is not None for p in model.parameters())


def test_retain_graph_keeps_the_graph_until_the_last_backward():
    model, x, target, _ = _setup()
    loss = F.cross_entropy(model(x), target)
    loss.backward(retain_graph=True)
    assert loss._node.inputs is not None
    first = [p.grad.numpy() for p in model.parameters()]
    loss.backward()
    assert loss._node.inputs is None
    for g, p in zip(first, model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), 2 * g, rtol=1e-5, atol=1e-7)


def test_training_loop_memory_is_flat_after_warmup_tracemalloc():
    tracemalloc.start()
    try:
        memory, cycles = _memory_after_warmup(lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    growth = memory[STEPS] - memory[WARMUP]
    assert growth < 64 * 1024, f"traced memory grew by {growth} bytes from step {WARMUP} to {STEPS}"
    assert cycles == 0, f"the training steps left {cycles} objects in reference cycles"


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_training_loop_memory_is_flat_after_warmup_rss():
    memory, _ = _memory_after_warmup(_rss_bytes)
    growth = memory[STEPS] - memory[WARMUP]
    assert growth < 4 * 2 ** 20, f"resident memory grew by {growth / 2 ** 20:.1f} MiB from step {WARMUP} to {STEPS}"


def test_the_graph_keeps_no_input_an_op_did_not_save():
    """max_pool2d saves only its argmax: its input, made by another op, is freed once the caller drops
    it, and the gradient still reaches the leaf through the node that made it."""
    x = minires.tensor(np.arange(32.0).reshape(1, 2, 4, 4), requires_grad=True)
    h = x * 2.0
    data = weakref.ref(h.data)
    y = F.max_pool2d(h, 2)
    del h
    gc.collect()
    assert data() is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[0, 0, 0, 0], [0, 2, 0, 2]] * 2)


def test_fused_relus_are_one_node_saving_one_activation_in_the_input_layout():
    """bn(x, relu=True) and add_relu(a, b) on channel-major inputs (conv2d's layout): one node each,
    that saves one activation-sized array (batch norm its input, add_relu its output), with the
    output in the input's memory layout."""
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((3, 4, 5, 5)).astype(np.float32).transpose(1, 0, 2, 3), requires_grad=True)
    y = fusion.batch_norm(x, None, None, training=True, relu=True)
    z = fusion.add_relu(y, x)
    for out, first_input in ((y, x), (z, y)):
        edge = out._node.inputs[0]  # the leaf itself, or the node that made a non-leaf input
        assert (edge is first_input if first_input.is_leaf else edge._node is first_input._node)
        assert out.data.strides == x.data.strides
        activations = [a for a in out._node.saved_tensors if a is not None and a.size > x.shape[1]]  # not (C,) vectors
        assert [a.size for a in activations] == [x.data.size]


@pytest.mark.parametrize("shape, k, winograd", [((2, 3, 6, 6), 3, False), ((2, 3, 6, 6), 1, False),
                                                 ((8, 3, 24, 24), 3, True)])
def test_conv_with_a_frozen_weight_saves_neither_input_nor_col(shape, k, winograd, monkeypatch):
    """Only the input's gradient wanted: conv2d keeps the weight, not x (which only the weight's
    gradient reads) nor a col or Winograd's V."""
    monkeypatch.setitem(minires.plans.THRESHOLDS, "winograd_training", (8, 0, 0, 0))  # on 8x8 maps and up, 3 channels
    x = minires.tensor(np.ones(shape), requires_grad=True)
    y = F.conv2d(x, minires.tensor(np.ones((4, 3, k, k))), padding=k // 2)
    assert (y._node.plan.name == minires.plans.Winograd.name) == winograd
    assert [a is None for a in y._node.saved_tensors] == [True, False]  # (col or x or V, weight)
