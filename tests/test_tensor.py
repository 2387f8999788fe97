"""The Tensor API and the autograd engine: construction, operators with broadcasting, reductions,
shape ops, gradient accumulation, no_grad, retain_graph, deep graphs, and dtype preservation."""
import importlib

import numpy as np
import pytest

import minires
import minires.functional as F


def _rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _positive(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


def _compare_with_torch(fn, arrays, torch_fn=None, atol=1e-12):
    """Run fn on minires and torch leaves made from ``arrays`` (float64); the outputs and the
    gradients of sum(out * cotangent) must agree."""
    torch = pytest.importorskip("torch")
    ours = [minires.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = fn(*ours), (torch_fn or fn)(*theirs)
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-12, atol=atol)
    cot = _rand(*out.shape, seed=99)
    out.backward(cot)
    ref.backward(torch.tensor(cot))
    for t, r in zip(ours, theirs):
        assert t.grad.shape == t.shape
        np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=1e-12, atol=atol)


# --- construction and array facts ------------------------------------------------------------

def test_python_floats_become_float32_and_ints_int64():
    assert minires.tensor(1.5).dtype == np.float32
    assert minires.tensor([[1.0, 2.0]]).dtype == np.float32
    assert minires.tensor([1, 2]).dtype == np.int64
    assert minires.Tensor([0.5, 1.5]).dtype == np.float32
    assert minires.tensor([1.0, 2.0], dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
def test_arrays_keep_their_dtype(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    t = minires.tensor(a)
    assert t.dtype == dtype and t.shape == (2, 3) and t.ndim == 2
    assert minires.tensor(a, dtype=np.float32).dtype == np.float32


def test_tensor_copies_its_data():
    a = np.ones(3)
    t = minires.tensor(a)
    a[0] = 5.0
    assert t.numpy()[0] == 1.0
    u = minires.tensor(t)
    t.data[1] = 7.0
    assert u.numpy()[1] == 1.0


def test_attributes():
    t = minires.Tensor(np.zeros((2, 3, 4)), requires_grad=True)
    assert (t.shape, t.ndim, t.dtype, t.requires_grad, t.grad) == ((2, 3, 4), 3, np.float64, True, None)
    assert isinstance(t.data, np.ndarray) and t.is_leaf
    assert not minires.Tensor(np.zeros(2)).requires_grad


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        minires.Tensor(np.arange(3), requires_grad=True)


def test_numpy_returns_a_copy():
    t = minires.tensor(np.arange(4.0))
    n = t.numpy()
    n[0] = 100.0
    assert t.data[0] == 0.0 and isinstance(n, np.ndarray)


def test_detach_shares_data_and_leaves_the_graph():
    x = minires.tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad is None
    assert np.shares_memory(d.data, y.data)


def test_item():
    v = minires.tensor(np.array([[2.5]])).item()
    assert v == 2.5 and isinstance(v, float)
    with pytest.raises(ValueError, match=r"item.*\(2,\)"):
        minires.tensor(np.ones(2)).item()


# --- operators, reductions and shape ops against torch ---------------------------------------

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((5,), (2, 1, 5)), ((2, 1, 4), (3, 1))]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES)
def test_binary_operators_broadcast_like_torch(name, sa, sb):
    # positive operands keep pow's a ** b and its log(a) real
    _compare_with_torch(BINARY[name], [_positive(*sa, seed=1), _positive(*sb, seed=2)])


@pytest.mark.parametrize("name", BINARY)
def test_python_scalars_on_either_side(name):
    fn = BINARY[name]
    _compare_with_torch(lambda a: fn(a, 1.5), [_positive(2, 3)])
    _compare_with_torch(lambda a: fn(1.5, a), [_positive(2, 3)])
    _compare_with_torch(lambda a: fn(2, a), [_positive(2, 3)])


def test_unary_minus():
    _compare_with_torch(lambda a: -a, [_rand(3, 2)])


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul_like_torch(sa, sb):
    _compare_with_torch(lambda a, b: a @ b, [_rand(*sa, seed=1), _rand(*sb, seed=2)])


def test_unary_functions_like_torch():
    x = _rand(4, 5)
    x[0, 0] = 0.0  # relu's gradient at 0 is 0, as in torch
    _compare_with_torch(lambda a: a.exp(), [x])
    _compare_with_torch(lambda a: a.relu(), [x])
    _compare_with_torch(lambda a: a.log(), [_positive(4, 5)])


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1,)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_like_torch(reduce, axis, keepdims):
    def torch_fn(t):
        dim = tuple(range(t.ndim)) if axis is None else axis
        return getattr(t, reduce)(dim=dim, keepdim=keepdims)
    _compare_with_torch(lambda t: getattr(t, reduce)(axis=axis, keepdims=keepdims), [_rand(2, 3, 4)], torch_fn)


def test_reduction_axis_out_of_range():
    with pytest.raises(ValueError, match="sum: axis 3 is out of range"):
        minires.tensor(np.ones((2, 3))).sum(axis=3)


def test_shape_ops_like_torch():
    x = [_rand(2, 3, 4)]
    _compare_with_torch(lambda t: t.reshape(4, 6), x)
    _compare_with_torch(lambda t: t.reshape((6, -1)), x)
    _compare_with_torch(lambda t: t.transpose(2, 0, 1), x, lambda t: t.permute(2, 0, 1))
    _compare_with_torch(lambda t: t.transpose(), x, lambda t: t.permute(2, 1, 0))
    _compare_with_torch(lambda t: t.flatten(1), x)
    _compare_with_torch(lambda t: t.flatten(), x)
    _compare_with_torch(lambda t: t.flatten(0, 1), x)


@pytest.mark.parametrize("index", [(0,), (slice(None), 1), (Ellipsis, slice(1, 3)), (slice(None), None, 2),
                                   (np.array([0, 1, 0]),), (slice(None), [2, 2, 0])],
                         ids=["int", "column", "ellipsis", "newaxis", "repeated-rows", "repeated-columns"])
def test_indexing_like_torch(index):
    # repeated indices accumulate their gradients
    _compare_with_torch(lambda t: t[index], [_rand(2, 3, 4)],
                        lambda t: t[tuple(torch_index(i) for i in index)])


def torch_index(i):
    torch = pytest.importorskip("torch")
    return torch.as_tensor(i) if isinstance(i, (np.ndarray, list)) else i


def test_negative_step_slice_gradient():
    x = minires.tensor(np.arange(5.0), requires_grad=True)
    y = x[::-2]
    np.testing.assert_array_equal(y.numpy(), [4.0, 2.0, 0.0])
    y.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 2.0, 0.0, 1.0])


# --- the engine -----------------------------------------------------------------------------

def test_a_tensor_used_several_times_accumulates_its_gradients():
    x = minires.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x + x * 3.0 - x).sum().backward()  # d/dx = 2x + 2
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 2)


def test_broadcast_gradients_reduce_to_the_operand_shape():
    a = minires.tensor(np.ones((3, 1)), requires_grad=True)
    b = minires.tensor(np.arange(4.0), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 6.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 3.0))


def test_grad_accumulates_across_backward_calls():
    x = minires.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    first = x.grad
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0 + 2 * x.numpy())
    assert x.grad is first  # accumulated in place, as torch


def test_leaf_grad_does_not_alias_other_arrays():
    x = minires.tensor(np.ones(3), requires_grad=True)
    upstream = np.full(3, 2.0)
    (x + 0.0).backward(upstream)
    x.grad.data += 1.0
    np.testing.assert_array_equal(upstream, np.full(3, 2.0))


def test_leaf_grads_of_one_gradient_array_are_separate():
    """Add's backward hands the same array to both leaves: one of them may keep it, not both."""
    a, b = (minires.tensor(np.ones(3), requires_grad=True) for _ in range(2))
    for _ in range(2):
        (a + b).backward(np.full(3, 2.0))
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data += 1.0
    np.testing.assert_array_equal(b.grad.numpy(), np.full(3, 4.0))


class _KeepsItsGradient(minires.Function):
    """A user op whose backward returns an array it also keeps: a leaf's .grad must not take it."""
    kept = np.full(3, 5.0)

    @staticmethod
    def forward(ctx, x):
        return x * 1

    @staticmethod
    def backward(ctx, g):
        return _KeepsItsGradient.kept


def test_leaf_grad_copies_an_array_an_op_keeps():
    x = minires.tensor(np.ones(3), requires_grad=True)
    for _ in range(2):
        _KeepsItsGradient.apply(x).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 10.0))
    np.testing.assert_array_equal(_KeepsItsGradient.kept, np.full(3, 5.0))


class _Gives(minires.Function):
    """Identity forward; backward returns what ``give(g)`` makes of the gradient, and notes where its
    data starts in ``given`` (an address, as a reference would hold the array)."""
    given = []

    @staticmethod
    def forward(ctx, x, give):
        ctx.give = give
        return x * 1

    @staticmethod
    def backward(ctx, g):
        g = ctx.give(g)
        _Gives.given.append(g.__array_interface__["data"][0])
        return g, None


class _Notes(minires.Function):
    """Identity; notes the gradient its backward receives in ``received``."""
    received = []

    @staticmethod
    def forward(ctx, x):
        return x * 1

    @staticmethod
    def backward(ctx, g):
        _Notes.received.append(g)
        return g


def _sum_of_two_uses(first, then, upstream=None):
    """The gradient that reaches y = Notes(x) from two uses of y, whose backward passes return
    first(g), which arrives first, and then(g)."""
    _Gives.given.clear(), _Notes.received.clear()
    x = minires.tensor(np.ones((2, 3)), requires_grad=True)
    y = _Notes.apply(x)
    (_Gives.apply(y, then) + _Gives.apply(y, first)).backward(np.ones((2, 3)) if upstream is None else upstream)
    return _Notes.received[0]  # the use made last runs first


def test_a_gradient_used_twice_is_summed_into_the_first_when_nothing_else_holds_it():
    """The first gradient to arrive, a fresh array (or a view of one) that only the engine holds,
    takes the second in place: no new array per residual block."""
    for first in (lambda g: np.full((2, 3), 5.0), lambda g: np.full((3, 2), 5.0).T):
        g = _sum_of_two_uses(first, lambda g: np.full((2, 3), 2.0))
        np.testing.assert_array_equal(g, np.full((2, 3), 7.0))
        assert g.__array_interface__["data"][0] == _Gives.given[0]  # a new sum would be elsewhere


def test_a_gradient_used_twice_leaves_arrays_others_hold_alone():
    """Held by an op, a view of an array held so, a view of memory other arrays see (a buffer), the
    caller's upstream gradient passed through, or a view whose elements share memory: summed into
    a new array, the held one unchanged."""
    kept, upstream, buffer = np.full((2, 3), 5.0), np.ones((2, 3)), bytearray(np.full(6, 5.0).tobytes())
    other = np.frombuffer(buffer)
    for first in (lambda g: kept, lambda g: kept[:, :], lambda g: np.frombuffer(buffer)[:].reshape(2, 3),
                  lambda g: np.lib.stride_tricks.as_strided(np.full(3, 5.0), (2, 3), (0, 8))):
        g = _sum_of_two_uses(first, lambda g: np.full((2, 3), 2.0))
        np.testing.assert_array_equal(g, np.full((2, 3), 7.0))
        np.testing.assert_array_equal(kept, np.full((2, 3), 5.0))
        np.testing.assert_array_equal(other, np.full(6, 5.0))
    g = _sum_of_two_uses(lambda g: g, lambda g: np.full((2, 3), 2.0), upstream)
    np.testing.assert_array_equal(g, np.full((2, 3), 3.0))
    np.testing.assert_array_equal(upstream, np.ones((2, 3)))


def test_leaf_grad_takes_a_fresh_gradient_without_copying(monkeypatch):
    """A weight's gradient that nothing else holds becomes its .grad as it is (no copy per step).
    The spy notes the ids of conv2d's gradients, not the arrays, which would be references."""
    conv = importlib.import_module("minires.ops.conv")
    backward, made = conv.Conv2d.backward, []
    monkeypatch.setattr(conv.Conv2d, "backward", staticmethod(
        lambda ctx, g: tuple(made.append(id(r)) or r for r in backward(ctx, g))))
    w = minires.tensor(np.ones((4, 3, 3, 3)), requires_grad=True)
    F.conv2d(minires.tensor(np.ones((2, 3, 5, 5))), w, padding=1).sum().backward()
    assert id(w.grad.data) == made[1]


def test_no_grad_records_nothing():
    x = minires.tensor(np.ones(3), requires_grad=True)
    with minires.no_grad():
        assert not minires.is_grad_enabled()
        y = (x * 2.0 + 1.0).exp().sum()
    assert minires.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(KeyError):
        with minires.no_grad():
            raise KeyError
    assert minires.is_grad_enabled()


def test_ops_without_grad_inputs_record_nothing():
    y = minires.tensor(np.ones(3)) * 2.0
    assert not y.requires_grad and y.is_leaf


def test_retain_graph_allows_a_second_backward():
    x = minires.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.numpy())


def test_second_backward_without_retain_graph_raises():
    x = minires.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_backward_of_a_non_scalar_needs_a_grad():
    x = minires.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match=r"backward.*\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"backward.*\(3,\).*\(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(x.grad.numpy(), np.ones((2, 3)))


def test_a_graph_20000_ops_deep_backpropagates():
    x = minires.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(10_000):  # 20,000 nodes: a mul and an add per step
        y = y * 1.0001 + 0.5
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(2, 1.0001 ** 10_000), rtol=1e-9)


def test_residual_addition_delivers_gradient_to_both_branches():
    torch = pytest.importorskip("torch")
    x, w = _rand(2, 3, 5, 5, seed=1), _rand(3, 3, 3, 3, seed=2)

    def block(xt, wt, conv, relu):
        return relu(conv(xt, wt, padding=1) + xt)

    ours = [minires.tensor(a, requires_grad=True) for a in (x, w)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    (block(*ours, F.conv2d, F.relu) * 1.5).sum().backward()
    (block(*theirs, torch.nn.functional.conv2d, torch.relu) * 1.5).sum().backward()
    for t, r in zip(ours, theirs):
        np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_residual_addition_sums_both_branches():
    x = minires.tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * 3.0 + x).sum().backward()  # branch d/dx = 3, skip d/dx = 1
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])


def test_mixed_dtypes_promote_and_each_input_gets_its_own_dtype_back():
    a = minires.tensor(np.ones(3, np.float32), requires_grad=True)
    b = minires.tensor(np.full(3, 2.0), requires_grad=True)
    y = a * b
    assert y.dtype == np.float64  # as torch.ones(3) * torch.ones(3, dtype=torch.float64)
    y.sum().backward()
    assert (a.grad.dtype, b.grad.dtype) == (np.float32, np.float64)
    np.testing.assert_array_equal(a.grad.numpy(), np.full(3, 2.0))


# --- float32 stays float32 ------------------------------------------------------------------

def _f32(*shape, seed=0):
    return minires.tensor(_rand(*shape, seed=seed, dtype=np.float32), requires_grad=True)


class _Leaves(list):
    """Makes float32 leaves that require grad, and remembers them."""

    def __call__(self, *shape):
        self.append(_f32(*shape, seed=len(self) + 1))
        return self[-1]


def _stats(c):
    return minires.tensor(np.zeros(c, np.float32)), minires.tensor(np.ones(c, np.float32))


FLOAT32_OPS = {
    "add-scalar": (lambda x, p: 1.5 + x - 2.0 + p(4), (3, 4)),
    "mul-div": (lambda x, p: 2.0 * x / 3.0 * p(4) / (p(3, 1) + 5.0), (3, 4)),
    "pow": (lambda x, p: (x * x + 1.0) ** 0.5 + 2.0 ** x + (p(4) * p(4) + 1.0) ** p(4), (3, 4)),
    "numpy-scalar": (lambda x, p: x * np.float64(2.0) + np.sqrt(2.0) - np.float32(1.0) * x, (3, 4)),
    "exp-log-relu-neg": (lambda x, p: -(x.exp() + 1.0).log().relu(), (3, 4)),
    "matmul": (lambda x, p: x @ p(4, 2) + p(4) @ p(4, 2), (3, 4)),
    "sum-mean": (lambda x, p: x.sum(axis=0) + x.mean(axis=1, keepdims=True) + x.sum() + x.mean(), (4, 4)),
    "shape-ops": (lambda x, p: x.reshape(2, 6).transpose()[1:, ::2].flatten() + x[[0, 0, 1, 2, 2], 1], (3, 4)),
    "conv2d": (lambda x, p: F.conv2d(x, p(4, 3, 3, 3), p(4), stride=2, padding=1), (2, 3, 6, 6)),
    "conv2d-1x1-grouped": (lambda x, p: F.conv2d(x, p(4, 1, 1, 1), groups=2), (2, 2, 4, 4)),
    "batch_norm-train": (lambda x, p: F.batch_norm(x, *_stats(3), p(3), p(3), training=True), (2, 3, 4, 4)),
    "batch_norm-eval": (lambda x, p: F.batch_norm(x, *_stats(3), p(3), p(3)), (2, 3, 4, 4)),
    "batch_norm-no-stats": (lambda x, p: F.batch_norm(x, None, None, training=True), (2, 3, 4, 4)),
    "max_pool2d": (lambda x, p: F.max_pool2d(x, 3, 2, padding=1), (2, 3, 6, 6)),
    "avg_pool2d": (lambda x, p: F.avg_pool2d(x, 2, padding=1, count_include_pad=False), (2, 3, 6, 6)),
    "adaptive_avg_pool2d": (lambda x, p: F.adaptive_avg_pool2d(x, (2, 3)) + F.adaptive_avg_pool2d(x, 1), (2, 3, 5, 7)),
    "relu": (lambda x, p: F.relu(x), (2, 3)),
    "linear": (lambda x, p: F.linear(x, p(5, 4), p(5)), (3, 4)),
    "log_softmax": (lambda x, p: F.log_softmax(x, 1), (3, 4)),
    "cross_entropy": (lambda x, p: F.cross_entropy(x, np.array([0, 3, 1])), (3, 4)),
    "cross_entropy-weighted-smoothed": (lambda x, p: F.cross_entropy(
        x, np.array([[0, 2], [1, 1]]), weight=minires.tensor(np.ones(3, np.float32)), label_smoothing=0.1), (2, 3, 2)),
    "cross_entropy-none": (lambda x, p: F.cross_entropy(x, np.array([0, 3, 1]), reduction="none"), (3, 4)),
}


@pytest.mark.parametrize("name", FLOAT32_OPS)
def test_float32_stays_float32_through_forward_and_backward(name):
    fn, shape = FLOAT32_OPS[name]
    leaves = _Leaves()
    x = leaves(*shape)
    y = fn(x, leaves)
    assert y.dtype == np.float32, f"{name}: forward gave {y.dtype}"
    y.backward(np.ones(y.shape, np.float32))
    for i, t in enumerate(leaves):
        assert t.grad is not None and t.grad.dtype == np.float32, f"{name}: leaf {i} got grad {t.grad and t.grad.dtype}"
