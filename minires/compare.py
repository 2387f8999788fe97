"""Compare models' cost with their accuracy: ``minires compare resnet18 resnet34 resnet50 ...``.

For each model: its parameters, multiply-adds per image (minires.summary's count: convolutions and
linear layers), training and inference throughput measured here (images per second of the median
step, minires.workload), the peak memory of a training step (minires.profile(memory=True)), and the
ImageNet top-1 accuracy that torchvision publishes for its weights of that architecture, where it
publishes one. Prints a table and writes a PNG: throughput per model, and top-1 against
multiply-adds, so that a student choosing a model sees what accuracy each extra GMAC buys.

The throughput is this machine's, at the --size and --batch given; the top-1 is the published
figure at 224x224, whatever --size says.
"""
import sys

from . import workload
from .profiler import check_output, profile
from .study import UsageError, _figure, _save
from .summary import summary

# ImageNet-1K acc@1 (%) of torchvision's weights, from torchvision's model documentation: the page
# of each builder (https://pytorch.org/vision/stable/models.html, e.g. models/generated/
# torchvision.models.resnet50.html) lists every weight enum with its acc@1. IMAGENET1K_V1 weights
# reproduce the paper's simple recipe; IMAGENET1K_V2 come from torchvision's newer training recipe.
PUBLISHED_TOP1 = {
    "resnet18": {"ResNet18_Weights.IMAGENET1K_V1": 69.758},
    "resnet34": {"ResNet34_Weights.IMAGENET1K_V1": 73.314},
    "resnet50": {"ResNet50_Weights.IMAGENET1K_V1": 76.130, "ResNet50_Weights.IMAGENET1K_V2": 80.858},
    "resnet101": {"ResNet101_Weights.IMAGENET1K_V1": 77.374, "ResNet101_Weights.IMAGENET1K_V2": 81.886},
    "resnet152": {"ResNet152_Weights.IMAGENET1K_V1": 78.312, "ResNet152_Weights.IMAGENET1K_V2": 82.284},
    "resnext50_32x4d": {"ResNeXt50_32X4D_Weights.IMAGENET1K_V1": 77.618,
                        "ResNeXt50_32X4D_Weights.IMAGENET1K_V2": 81.198},
    "wide_resnet50_2": {"Wide_ResNet50_2_Weights.IMAGENET1K_V1": 78.468,
                        "Wide_ResNet50_2_Weights.IMAGENET1K_V2": 81.602},
}


def add_arguments(parser):
    parser.add_argument("models", nargs="+", metavar="MODEL", help="models of the zoo, e.g. resnet18 resnet34 resnet50")
    workload.add_arguments(parser, batch=8, steps=3)
    parser.add_argument("--out", default="compare.png", help="the chart, a PNG (default: compare.png)")


def run(args):
    try:
        batch, size, steps = workload.numbers(args, args.models)
        if len(set(args.models)) != len(args.models):
            raise UsageError(f"a model is named twice: {' '.join(args.models)}")
        check_output("--out", args.out)
        rows = [measure(name, batch, size, steps, args.device, args.small_input) for name in args.models]
    except UsageError as e:
        print(f"minires compare: error: {e}", file=sys.stderr)
        return 2
    print(f"batch {batch}, {size}x{size}, {args.device}; throughput of the median of {steps} steps after one "
          f"untimed; top-1: torchvision's published ImageNet figure (224x224)")
    print(table(rows))
    plot(rows, args.out, f"batch {batch}, {size}x{size}, {args.device}")
    print(f"wrote {args.out}")
    return 0


def measure(name, batch, size, steps, device, small_input):
    """One model's row: name, params, macs (per image), train and infer (images/s), peak (bytes of a
    training step), top1 ({weights: acc@1})."""
    w = workload.Workload(name, batch, size, device, small_input)
    train = w.images_per_second(True, steps)
    infer = w.images_per_second(False, steps)
    with profile(memory=True) as prof:
        w.train_step()
    macs = summary(w.model, (3, size, size), print_table=False).total_macs
    params = sum(p.numel() for p in w.model.parameters())
    return dict(name=name, params=params, macs=macs, train=train, infer=infer, peak=prof.peak_bytes,
                top1=PUBLISHED_TOP1.get(name, {}))


def table(rows):
    lines = [("model", "params (M)", "GMACs/image", "train img/s", "infer img/s", "peak MB", "top-1 %", "weights")]
    for r in rows:
        best = max(r["top1"].items(), key=lambda kv: kv[1], default=("", None))
        lines.append((r["name"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.3f}", f"{r['train']:.1f}",
                      f"{r['infer']:.1f}", f"{r['peak'] / 2 ** 20:.0f}", "" if best[1] is None else f"{best[1]:.3f}",
                      best[0] or "(none published)"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1])]
                               + [line[-1]]) for line in lines)


def plot(rows, path, title):
    """Left: training and inference images per second per model. Right: published top-1 against
    GMACs per image, a point per weight enum (V1 circles, V2 squares), labelled with the model."""
    fig, _ = _figure((11, 4))
    speed, accuracy = fig.subplots(1, 2)
    names = [r["name"] for r in rows]
    at = range(len(rows))
    speed.bar([i - 0.2 for i in at], [r["train"] for r in rows], width=0.4, label="training")
    speed.bar([i + 0.2 for i in at], [r["infer"] for r in rows], width=0.4, label="inference")
    speed.set_xticks(list(at), names, rotation=30, ha="right")
    speed.set_ylabel("images per second (this machine)")
    speed.set_title(title, fontsize=9)
    speed.legend()
    for r in rows:
        for weights, top1 in r["top1"].items():
            accuracy.scatter(r["macs"] / 1e9, top1, marker="s" if weights.endswith("V2") else "o", color="C0")
            accuracy.annotate(r["name"], (r["macs"] / 1e9, top1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    accuracy.set_xlabel("GMACs per image, at the size measured")
    accuracy.set_ylabel("published ImageNet top-1 (%), 224x224")
    accuracy.set_title("torchvision's weights: IMAGENET1K_V1 (o), V2 (s)", fontsize=9)
    for ax in (speed, accuracy):
        ax.grid(alpha=0.3)
    _save(fig, path)
