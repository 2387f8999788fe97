"""Hooks, as PyTorch's: a module's forward pre-hooks, forward hooks and full backward hooks, compared
call for call with torch's on the same residual blocks (what each hook received, in what order, and
what a hook that returns a value changes); a tensor's register_hook and retain_grad; handles; and
that hooks leave backward freeing the graph."""
import gc
import os
import sys
import weakref

import numpy as np
import pytest

import minires
from minires import models, nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from make_model_reference import draw_state  # noqa: E402

torch = pytest.importorskip("torch")
import torch_resnet  # noqa: E402

# name -> (minires block, torch block), built alike: (in channels, planes, stride, shortcut)
BLOCKS = {
    "basic": (4, 4, 1, None), "basic_projection": (4, 6, 2, (4, 6)),
    "bottleneck": (8, 2, 1, None), "bottleneck_projection": (4, 2, 2, (4, 8)),
}


def block_pair(kind, seed=1):
    """The same residual block in minires and in torch (float64, weights drawn from seed, training
    mode), with torch's ReLUs not in place (PyTorch refuses full backward hooks on modules whose
    output a later ReLU overwrites)."""
    cin, planes, stride, shortcut = BLOCKS[kind]
    ours_cls, theirs_cls = (models.BasicBlock, torch_resnet.BasicBlock) if kind.startswith("basic") else \
        (models.Bottleneck, torch_resnet.Bottleneck)
    ours_down = theirs_down = None
    if shortcut:
        ours_down = models.resnet.make_downsample(*shortcut, stride)
        theirs_down = torch.nn.Sequential(torch_resnet._conv(*shortcut, 1, stride), torch.nn.BatchNorm2d(shortcut[1]))
    ours = ours_cls(cin, planes, stride, ours_down).double()
    theirs = theirs_cls(cin, planes, stride, theirs_down).double()
    state = draw_state({k: v.shape for k, v in ours.state_dict().items()}, seed)
    ours.load_state_dict(state)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for m in theirs.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    return ours, theirs


def block_input(kind, seed=2):
    return np.random.default_rng(seed).standard_normal((2, BLOCKS[kind][0], 6, 6))


def forward_backward(model, x, to_tensor, x_requires_grad=True):
    """sum(model(x) * r) (r fixed, random) and its backward: (output, x.grad, parameter gradients)."""
    xt = to_tensor(x)
    xt.requires_grad = x_requires_grad
    out = model(xt)
    (out * to_tensor(np.random.default_rng(3).standard_normal(tuple(out.shape)))).sum().backward()
    return [_array(out), _array(xt.grad)] + [_array(p.grad) for p in model.parameters()]


def _array(t):
    return None if t is None else np.array(t.detach().numpy())


def record_every_hook(model, log):
    """Register the three kinds of hooks on every module; each appends (module name, kind, the
    arrays it received) to log. Returns the handles."""
    def arrays(*tuples):
        return tuple(_array(t) for tup in tuples for t in tup)

    handles = []
    for name, m in model.named_modules():
        handles += [
            m.register_forward_pre_hook(lambda m, args, name=name: log.append((name, "pre", arrays(args)))),
            m.register_forward_hook(lambda m, args, out, name=name: log.append((name, "forward", arrays(args, (out,))))),
            m.register_full_backward_hook(lambda m, gi, go, name=name: log.append((name, "backward", arrays(gi, go)))),
        ]
    return handles


def assert_same_arrays(ours, theirs, where):
    assert len(ours) == len(theirs), where
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None), where
        if a is not None:
            assert a.shape == b.shape, where
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10, err_msg=str(where))


def assert_same_calls(ours, theirs):
    assert [c[:2] for c in ours] == [c[:2] for c in theirs]
    for (name, kind, a), (_, _, b) in zip(ours, theirs):
        assert_same_arrays(a, b, (name, kind))


# --- module hooks against torch's ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # torch's, where x requires no grad
@pytest.mark.parametrize("x_requires_grad", [True, False])
@pytest.mark.parametrize("kind", BLOCKS)
def test_module_hooks_receive_what_torchs_receive(kind, x_requires_grad):
    ours, theirs = block_pair(kind)
    log_ours, log_theirs = [], []
    record_every_hook(ours, log_ours), record_every_hook(theirs, log_theirs)
    x = block_input(kind)
    assert_same_arrays(forward_backward(ours, x, minires.tensor, x_requires_grad),
                       forward_backward(theirs, x, torch.tensor, x_requires_grad), "results")
    forward = lambda log: [c for c in log if c[1] != "backward"]  # noqa: E731
    assert {c[0] for c in forward(log_ours)} == {name for name, _ in ours.named_modules()}
    assert_same_calls(forward(log_ours), forward(log_theirs))
    backward = [[c for c in log if c[1] == "backward"] for log in (log_ours, log_theirs)]
    assert_same_calls(*backward)  # across the shortcut and the main path too: the ready node made last runs first


def test_hooks_that_return_values_change_the_result_as_torchs_do():
    results = []
    for model, to_tensor in zip(block_pair("basic"), (minires.tensor, torch.tensor)):
        plain = forward_backward(model, block_input("basic"), to_tensor)
        model.conv2.register_forward_pre_hook(lambda m, args: args[0] * 0.25)  # not a tuple: made one
        model.bn1.register_forward_hook(lambda m, args, out: out * 2.0)
        model.bn2.register_full_backward_hook(lambda m, grad_input, grad_output: (grad_input[0] * 3.0,))
        results.append(forward_backward(model, block_input("basic"), to_tensor))
        changed = [not np.allclose(a, b) for a, b in zip(plain, results[-1])]
        assert all(changed[:4]), changed  # the output, x.grad, conv1.weight.grad, bn1.weight.grad
    assert_same_arrays(*results, "results")


def test_a_removed_hook_is_not_called_and_handles_are_context_managers():
    block, _ = block_pair("basic")
    log = []
    handles = record_every_hook(block, log)
    with block.relu.register_forward_hook(lambda m, args, out: log.append("with")):
        forward_backward(block, block_input("basic"), minires.tensor)
    calls = len(list(block.modules())) + 1  # the ReLU runs twice
    assert log.count("with") == 2 and len(log) == 3 * calls + 2  # pre, forward, backward each call
    for h in handles:
        h.remove()
    h.remove()  # twice: nothing more
    log.clear()
    forward_backward(block, block_input("basic"), minires.tensor)
    assert log == [] and all(not m._hooks for m in block.modules())


def test_backward_hooks_name_what_they_cannot_take():
    class Two(nn.Module):
        def forward(self, a, b):
            return a * b

    m = Two()
    m.register_full_backward_hook(lambda *args: None)
    a, b = minires.tensor(np.ones(2), requires_grad=True), minires.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="register_full_backward_hook: Two was called with 2 tensors that require grad"):
        m(a, b)
    assert m(a, minires.tensor(np.ones(2))).shape == (2,)  # one that requires grad: fine
    block, _ = block_pair("basic")
    block.bn1.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="BatchNorm2d returned 2 grad_input entries for 1 arguments"):
        forward_backward(block, block_input("basic"), minires.tensor)


# --- tensor hooks ------------------------------------------------------------------------------
def test_tensor_hooks_and_retain_grad_as_torchs():
    """y = 3x is used twice: its hook sees the summed gradient once, and replaces it; x's hook runs
    after, on the leaf, before .grad; retain_grad keeps y's gradient after every hook (though asked first)."""
    x0 = np.random.default_rng(0).standard_normal(4)
    results = []
    for tensor in (minires.tensor, torch.tensor):
        seen = []
        x = tensor(x0, requires_grad=True)
        y = x * 3.0
        y.retain_grad()
        y.register_hook(lambda g: seen.append(("y", _array(g))) or g * 10.0)
        x.register_hook(lambda g: seen.append(("x", _array(g))) or g + 1.0)
        (y * y).sum().backward()
        assert [s[0] for s in seen] == ["y", "x"] and y.retains_grad and not x.retains_grad
        results.append([s[1] for s in seen] + [_array(y.grad), _array(x.grad)])
    assert_same_arrays(*results, "seen, y.grad, x.grad")
    np.testing.assert_allclose(results[0][3], 3 * 10 * 2 * 3 * x0 + 1)


def test_a_removed_tensor_hook_is_not_called_and_retained_grads_accumulate():
    x = minires.tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    y.retain_grad()
    calls = []
    handle = y.register_hook(lambda g: calls.append(1))
    with x.register_hook(lambda g: calls.append(2)):
        y.sum().backward(retain_graph=True)
    handle.remove()
    y.sum().backward()
    assert calls == [1, 2]
    np.testing.assert_array_equal(y.grad.numpy(), [2, 2, 2])  # accumulated, as a leaf's
    np.testing.assert_array_equal(x.grad.numpy(), [4, 4, 4])


def test_a_gradient_a_hook_keeps_is_not_accumulated_into():
    """The leaf's .grad may take the gradient array itself only when nobody else holds it."""
    w = minires.tensor(np.ones(3), requires_grad=True)
    kept = []
    handle = w.register_hook(kept.append)
    (w * 2.0).sum().backward()
    handle.remove()
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(kept[0].numpy(), [2, 2, 2])
    np.testing.assert_array_equal(w.grad.numpy(), [4, 4, 4])


def test_tensor_hooks_refuse_what_torch_refuses():
    with pytest.raises(RuntimeError, match="register_hook: cannot register a hook on a tensor that does not require grad"):
        minires.tensor(np.ones(2)).register_hook(print)
    with pytest.raises(RuntimeError, match="retain_grad: this tensor does not require grad"):
        minires.tensor(np.ones(2)).retain_grad()
    x = minires.tensor(np.ones(2), requires_grad=True)
    x.register_hook(lambda g: minires.tensor(np.ones(3)))
    with pytest.raises(RuntimeError, match=r"register_hook: a hook returned a gradient of shape \(3,\) and dtype float64 "
                                           r"for one of shape \(2,\)"):
        (x * 2.0).sum().backward()


# --- hooks leave backward freeing the graph ------------------------------------------------------
def _op_nodes(t):
    nodes, stack = [], [t.grad_fn]
    while stack:
        fn = stack.pop()
        if isinstance(fn, minires.Function) and all(fn is not n for n in nodes):
            nodes.append(fn)
            stack.extend(f for f, _ in fn.next_functions)
    return nodes


def test_hooks_do_not_keep_the_graph_alive():
    block, _ = block_pair("basic")
    shapes = []
    for m in block.modules():  # hooks that keep shapes only: a kept Tensor would keep its node
        m.register_forward_hook(lambda m, args, out: shapes.append(out.shape))
        m.register_full_backward_hook(lambda m, gi, go: shapes.append(go[0].shape))
    x = minires.tensor(block_input("basic"), requires_grad=True)
    h = block.conv1(x)
    h.retain_grad()
    h.register_hook(lambda g: shapes.append(g.shape))
    loss = block.relu(block.bn1(h)).sum()
    refs = [weakref.ref(n) for n in _op_nodes(loss) if n is not h.grad_fn]  # h keeps its own
    assert len(refs) > 5
    gc.collect()
    gc.disable()  # reference counting alone must free it: no cycle through a hook
    try:
        loss.backward()
        del loss
        assert all(r() is None for r in refs)
    finally:
        gc.enable()
    assert h.grad is not None and len(shapes) == 3 + 3 + 1
