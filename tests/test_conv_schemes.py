"""Which plan conv2d runs per shape, as minires.explain reports it: 1x1 stride-1 as a plain GEMM,
im2col + GEMM otherwise (in blocks of images where col is not kept), kernel taps that read only
padding dropped first (their gradient 0), maps smaller than the kernel as one GEMM with the unrolled
weight; and the reference plan everywhere when it is forced."""
import numpy as np
import pytest

import minires
from minires import functional as F
from minires import models, plans

BLOCKED, POINTWISE, UNROLLED = plans.BlockedIm2colGemm.name, plans.Pointwise.name, plans.UnrolledWeight.name


def plan_of(x_shape, w_shape, **kwargs):
    """The one row minires.explain gives for conv2d(x, w) with the weight's gradient wanted."""
    w = minires.tensor(np.zeros(w_shape), requires_grad=True)
    rows = minires.explain(lambda x: F.conv2d(x, w, **kwargs), x_shape, dtype=np.float64)
    assert len(rows) == 1
    return rows[0]


def run(x_shape, w_shape, **kwargs):
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = minires.tensor(rng.standard_normal(w_shape), requires_grad=True)
    F.conv2d(x, w, **kwargs).sum().backward()
    return w


def test_pointwise_is_a_plain_gemm():
    row = plan_of((2, 3, 4, 4), (5, 3, 1, 1))
    assert row.plan == POINTWISE and "1x1" in row.why and row.output_shape == (2, 5, 4, 4)


def test_3x3_runs_im2col():
    assert plan_of((2, 3, 4, 4), (5, 3, 3, 3), padding=1).plan == BLOCKED


def test_taps_in_the_padding_are_dropped_and_get_zero_gradient():
    row = plan_of((2, 3, 1, 1), (5, 3, 3, 3), padding=1)  # only the centre tap ever reads the 1x1 map
    assert row.plan == f"live taps -> {POINTWISE}" and row.chosen.window == ((1, 2), (1, 2))
    g = run((2, 3, 1, 1), (5, 3, 3, 3), padding=1).grad.numpy()
    assert g.shape == (5, 3, 3, 3) and np.abs(g[:, :, 1, 1]).min() > 0
    g[:, :, 1, 1] = 0
    assert not g.any()


@pytest.mark.parametrize("x_shape, w_shape, kwargs, unrolled", [
    ((2, 3, 2, 2), (5, 3, 3, 3), dict(padding=1), True),                # 4 positions < 9 taps
    ((2, 3, 3, 3), (5, 3, 5, 5), dict(padding=2, stride=2), True),      # 9 < 25
    ((2, 3, 3, 3), (5, 3, 3, 3), dict(padding=1), False),               # 9 = 9: im2col
    ((2, 3, 2, 2), (5, 3, 3, 3), dict(padding=1, stride=2), False),     # 4 = the 2x2 live taps
    ((2, 4, 2, 2), (4, 2, 3, 3), dict(padding=1, groups=2), False),     # groups: im2col
], ids=str)
def test_maps_smaller_than_the_kernel_are_one_gemm_with_the_unrolled_weight(x_shape, w_shape, kwargs, unrolled):
    """Exactly where the map has fewer positions than the kernel has live taps (and one group). Its
    values and gradients: the conv2d cases of op_cases (gradcheck, PyTorch) on such maps."""
    row = plan_of(x_shape, w_shape, **kwargs)
    assert (row.plan == UNROLLED) == unrolled
    assert row.plan.endswith(BLOCKED) == (not unrolled)


CHUNK_CASES = [  # (x shape, w shape, kwargs)
    ((5, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),                                   # 5 images: blocks of 2, 2, 1
    ((3, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((4, 3, 11, 10), (8, 3, 7, 7), dict(stride=2, padding=3)),                       # ResNet's stem
    ((3, 4, 7, 7), (5, 4, 1, 1), dict(stride=2)),                                    # 1x1 stride 2: im2col
]


def conv_and_grads(x_shape, w_shape, kwargs):
    """Output and input gradient with a frozen weight (no col to keep: the forward may go in blocks),
    and the plans chosen."""
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w, b = minires.tensor(rng.standard_normal(w_shape)), minires.tensor(rng.standard_normal(w_shape[0]))
    with plans.recording() as seen:
        y = F.conv2d(x, w, b, **kwargs)
        (y * minires.tensor(rng.standard_normal(y.shape))).sum().backward()
        with minires.no_grad():
            y_eval = F.conv2d(x, w, b, **kwargs)
    return [t.numpy() for t in (y, x.grad, y_eval)], seen


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CHUNK_CASES, ids=str)
def test_blocks_of_images_give_the_whole_batch_result(x_shape, w_shape, kwargs, monkeypatch):
    """With col limited to two images' worth, a forward that keeps no col (inference, frozen weights)
    runs block by block, and output and input gradient equal the whole batch's to rounding; the
    blocked forward is gradient-checked. Training keeps col: one block."""
    whole, _ = conv_and_grads(x_shape, w_shape, kwargs)
    y_hw = F.conv2d(minires.tensor(np.zeros(x_shape)), minires.tensor(np.zeros(w_shape)), **kwargs).shape[2:]
    col_bytes_per_image = 8 * x_shape[1] * w_shape[2] * w_shape[3] * y_hw[0] * y_hw[1]
    monkeypatch.setitem(plans.THRESHOLDS, "im2col_block_bytes", 2 * col_bytes_per_image)
    blocked, seen = conv_and_grads(x_shape, w_shape, kwargs)
    assert [len(p.blocks()) for p in seen] == [-(-x_shape[0] // 2)] * 2
    for a, b in zip(blocked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    rng = np.random.default_rng(1)
    x, w = minires.tensor(rng.standard_normal(x_shape), requires_grad=True), minires.tensor(rng.standard_normal(w_shape))
    assert minires.gradcheck(lambda x: F.conv2d(x, w, **kwargs), (x,))
    assert len(plan_of(x_shape, w_shape, **kwargs).chosen.blocks()) == 1


def test_forced_reference_plan_runs_every_convolution():
    """set_plans("reference"): every convolution of a ResNet is the reference plan, whatever its shape,
    and the result equals the fast plans' to rounding (whole networks: tests/test_models.py)."""
    model = models.resnet18(num_classes=10, small_input=True)
    fast = minires.explain(model, (4, 3, 8, 8))
    assert {r.plan for r in fast} == {BLOCKED, UNROLLED, f"live taps -> {BLOCKED}", f"live taps -> {POINTWISE}"}
    minires.set_plans("reference")
    try:
        reference = minires.explain(model, (4, 3, 8, 8))
    finally:
        minires.set_plans("fast")
    assert [r.module for r in reference] == [r.module for r in fast]
    assert {r.plan for r in reference} == {plans.Im2colGemm.name} and "set_plans('reference')" in reference[0].why
    with pytest.raises(ValueError, match="set_plans: expected one of"):
        minires.set_plans("fastest")


def test_explain_names_modules_and_leaves_the_model_as_it_was():
    model = models.resnet50()
    model.eval()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rows = minires.explain(model, (2, 3, 64, 64), training=True)
    assert len(rows) == 53 and rows[0].module == "conv1" and rows[-1].module == "layer4.2.conv3"
    assert rows[0].output_shape == (2, 64, 32, 32) and rows[0].chosen.needs == (False, True, False)
    assert rows[1].chosen.needs == (True, True, False)  # after the stem, inputs need their gradient too
    assert not model.training and all(np.array_equal(v.numpy(), before[k]) for k, v in model.state_dict().items())


def test_explain_command(capsys):
    from minires.cli import main
    assert main(["explain", "resnet18", "--input", "64,3,32,32", "--train"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["module", "input", "weight", "output", "plan", "why"]
    assert sum(line.startswith(("conv1 ", "layer")) for line in out) == 20
    assert out[-1] == "20 convolutions, training, input (64, 3, 32, 32), device cpu"
    for argv, message in [(["explain", "resnet19"], "minires explain: error: unknown model 'resnet19': expected one of "),
                          (["explain", "resnet18", "--input", "3,32,32"], "minires explain: error: --input must be N,C,H,W"),
                          (["explain", "resnet18", "--input", "1,3,0,4"], "minires explain: error: --input must be N,C,H,W")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
