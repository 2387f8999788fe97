"""What the ``minires train`` tests share: a tiny run's options and image folder, and the checks of
a run folder (an exact resume; the consistency a kill at any instant must keep)."""
import os

import numpy as np

import minires

# a constant lr after the warmup: the schedule does not depend on --epochs, so a 1-epoch run resumed
# for a 2nd is the same as 2 epochs straight
TINY = ["--model", "resnet18", "--batch-size", "16", "--lr", "0.02", "--warmup-epochs", "0.5", "--schedule", "constant",
        "--nesterov"]
OUTPUTS = ("last.npz", "best.npz", "metrics.csv", "curves.png")


def make_image_folder(root):
    """folder:PATH with train/ (12 per class) and test/ (4 per class): three classes of 8x8 images,
    each class a brighter or darker noisy blob."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c, name in enumerate(("dark", "mid", "light")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(80 * c + rng.normal(40, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return f"folder:{root}"


def assert_same_run(a_dir, b_dir):
    """Two runs' checkpoints agree in every metric but the timings, every weight and buffer, the
    optimizer state and the data order; their best.npz in epoch and weights; their metrics.csv too."""
    a, b = minires.load(a_dir / "last.npz"), minires.load(b_dir / "last.npz")
    for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc"):
        assert a["history"][k] == b["history"][k], k
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    for i, state in a["optimizer"]["state"].items():
        np.testing.assert_array_equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"] and a["loader"] == b["loader"]
    best_a, best_b = minires.load(a_dir / "best.npz"), minires.load(b_dir / "best.npz")
    assert best_a["epoch"] == best_b["epoch"]
    for k in best_a["model"]:
        np.testing.assert_array_equal(best_a["model"][k], best_b["model"][k], err_msg=f"best.npz {k}")
    metrics = [[row.split(",")[:5] for row in (d / "metrics.csv").read_text().splitlines()] for d in (a_dir, b_dir)]
    assert metrics[0] == metrics[1]


def assert_consistent(out):
    """What a run folder must show at every instant, a kill included: either no output, or all four,
    each loading; metrics.csv the history of last.npz; best.npz the epoch of metrics.csv's best test
    accuracy (the first, if tied). Returns the epoch of last.npz (0: none)."""
    from PIL import Image

    present = [name for name in OUTPUTS if os.path.exists(out / name)]
    if not present:
        return 0
    assert present == list(OUTPUTS), f"only {present} present"
    last, best = minires.load(out / "last.npz"), minires.load(out / "best.npz")
    Image.open(out / "curves.png").load()
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == last["history"]["epoch"] == list(range(1, last["epoch"] + 1)), \
        f"metrics.csv has epochs {[r[0] for r in rows]}, last.npz {last['epoch']}"
    for k, column in (("train_loss", 1), ("test_acc", 4)):
        assert [r[column] for r in rows] == [f"{v:.6g}" for v in last["history"][k]], k
    accuracies = [float(r[4]) for r in rows]
    assert best["epoch"] == 1 + int(np.argmax(accuracies)), \
        f"best.npz is epoch {best['epoch']}, metrics.csv's best {1 + int(np.argmax(accuracies))}"
    assert best["history"]["test_acc"] == last["history"]["test_acc"][:best["epoch"]]
    return last["epoch"]


def leftovers(out):
    """What a finished run must not leave in OUT: temporary files and epoch folders but the committed one."""
    return sorted(f for f in os.listdir(out) if f.endswith(".tmp") or f.startswith(".epoch-")
                  and os.path.realpath(out / f) != os.path.realpath(out / ".current"))
