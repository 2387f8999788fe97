"""grad_fn and next_functions against torch's graph of the same residual block, and minires.graph:
the tree, the DOT text, render, and the ``minires graph`` command."""
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import minires
from test_hooks import block_input, block_pair, torch

# minires's node names and torch's for the same op (minires names its own op classes)
TORCH_NAMES = {"Conv2dBackward": "ConvolutionBackward0", "BatchNormBackward": "NativeBatchNormBackward0",
               "ReLUBackward": "ReluBackward0", "AddBackward": "AddBackward0", "MulBackward": "MulBackward0",
               "SumBackward": "SumBackward0", "AccumulateGrad": "torch::autograd::AccumulateGrad"}


def loss_of(model, to_tensor, kind):
    """sum(model(x) * r) for the block's input x (requiring grad), r fixed: (loss, x)."""
    x = to_tensor(block_input(kind))
    x.requires_grad = True
    out = model(x)
    return (out * to_tensor(np.random.default_rng(3).standard_normal(tuple(out.shape)))).sum(), x


def structure(root):
    """The graph from root, depth first along next_functions (each node once):
    [(name, indices of the nodes in its next_functions, None entries left out)]."""
    order, stack = [], [root]
    while stack:
        fn = stack.pop()
        if fn not in order:
            order.append(fn)
            stack.extend(f for f, _ in reversed(fn.next_functions) if f is not None)
    return [(fn.name(), tuple(order.index(f) for f, _ in fn.next_functions if f is not None)) for fn in order], order


@pytest.mark.parametrize("kind", ["basic", "bottleneck_projection"])
def test_grad_fn_walks_the_same_graph_as_torchs(kind):
    ours, theirs = block_pair(kind)
    (loss, x), (loss_t, _) = loss_of(ours, minires.tensor, kind), loss_of(theirs, torch.tensor, kind)
    (mine, nodes), (ref, _) = structure(loss.grad_fn), structure(loss_t.grad_fn)
    assert [(TORCH_NAMES[name], nexts) for name, nexts in mine] == ref
    leaves = [n.variable for n in nodes if n.name() == "AccumulateGrad"]
    assert len(leaves) == len(list(ours.parameters())) + 1
    assert {id(v) for v in leaves} == {id(p) for p in ours.parameters()} | {id(x)}
    assert x.grad_fn is None and loss.grad_fn.name() == "SumBackward"


def test_next_functions_as_torchs():
    x, w = minires.tensor(np.ones(2), requires_grad=True), minires.tensor(np.ones(2))
    y = x * w
    (f, i), (none, j) = y.grad_fn.next_functions
    assert (i, j, none) == (0, 0, None) and f.variable is x and f == (x * 2.0).grad_fn.next_functions[0][0]
    z = y.relu()
    assert z.grad_fn.next_functions == ((y.grad_fn, 0),) and repr(y.grad_fn).startswith("<MulBackward object")
    z.grad_fn.metadata["note"] = 1
    assert z.grad_fn.metadata == {"note": 1}
    z.sum().backward()
    assert z.grad_fn.next_functions == ()  # freed


# --- minires.graph ----------------------------------------------------------------------------------
def block_graph():
    block, _ = block_pair("basic_projection")
    loss, x = loss_of(block, minires.tensor, "basic_projection")
    return minires.graph(loss, {"x": x, **dict(block.named_parameters())}), block, x


def test_graph_nodes_shapes_saved_bytes_and_plans():
    g, block, x = block_graph()
    assert [n.name for n in g.nodes[:3]] == ["SumBackward", "MulBackward", "ReLUBackward"]
    relu = g.nodes[2]
    assert relu.shape == (2, 6, 3, 3) and relu.dtype == np.float64
    assert relu.saved_bytes == 2 * 6 * 3 * 3 * 8  # its output, for the mask
    leaves = [n for n in g.nodes if n.name == "AccumulateGrad"]
    assert sorted(n.label for n in leaves) == sorted(["x"] + [k for k, _ in block.named_parameters()])
    assert all(n.saved_bytes == 0 and not n.inputs for n in leaves)
    conv1 = next(n for n in g.nodes if n.name == "Conv2dBackward" and g.nodes[n.inputs[1]].label == "conv1.weight")
    assert conv1.shape == (2, 6, 3, 3) and g.nodes[conv1.inputs[0]].label == "x"
    # the plans are those explain reports for the same calls
    rows = minires.explain(block, x.shape, training=True, dtype=np.float64, requires_grad=True)
    assert sorted(n.plan for n in g.nodes if n.plan) == sorted(r.plan for r in rows) and len(rows) == 3


def test_graph_tree_text():
    g, _, x = block_graph()
    text = str(g)
    lines = text.splitlines()
    assert lines[0] == "#0 SumBackward  () float64"
    assert re.search(r"^ +#\d+ Conv2dBackward  \(2, 6, 3, 3\) float64  saved [\d.]+ KiB  plan \S", text, re.M)
    assert re.search(r"^ +#\d+ AccumulateGrad  x  \(2, 4, 6, 6\) float64$", text, re.M)
    x_index = next(i for i, n in enumerate(g.nodes) if n.label == "x")
    assert sum(line.strip() == f"#{x_index} (above)" for line in lines) == 1  # conv1 and downsample use x
    assert len(lines) == len(g.nodes) + 1


def test_graph_dot_text():
    g, _, _ = block_graph()
    text = g.dot()
    assert text.startswith("digraph minires {\n") and text.endswith("}\n")
    body = text.splitlines()[2:-1]
    nodes = [re.fullmatch(r'  n(\d+) \[label="((?:[^"\\]|\\.)*)"(, style=filled, fillcolor=lightblue)?\];', line)
             for line in body[:len(g.nodes)]]
    assert all(nodes) and [int(m[1]) for m in nodes] == list(range(len(g.nodes)))
    assert [bool(m[3]) for m in nodes] == [n.name == "AccumulateGrad" for n in g.nodes]
    assert "\\nplan " in nodes[[n.name for n in g.nodes].index("Conv2dBackward")][2]
    edges = [re.fullmatch(r"  n(\d+) -> n(\d+);", line) for line in body[len(g.nodes):]]
    assert all(edges)  # from each input to the node that took it
    assert sorted((int(m[1]), int(m[2])) for m in edges) == sorted((j, i) for i, n in enumerate(g.nodes) for j in n.inputs)


def test_render_writes_dot_and_needs_graphviz_for_drawings(tmp_path, monkeypatch):
    g, _, _ = block_graph()
    g.render(str(tmp_path / "g.dot"))
    assert (tmp_path / "g.dot").read_text() == g.dot()
    monkeypatch.setitem(sys.modules, "graphviz", None)  # not installed
    with pytest.raises(RuntimeError, match=r"^Graph.render: drawing .svg needs the graphviz Python package: "
                                           r"pip install minires\[graph\]"):
        g.render(str(tmp_path / "g.svg"))
    fake = types.SimpleNamespace(ExecutableNotFound=OSError, Source=lambda text: types.SimpleNamespace(
        pipe=lambda format: f"<{format}>{len(text)}".encode()))
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    g.render(str(tmp_path / "g.svg"))
    assert (tmp_path / "g.svg").read_bytes() == f"<svg>{len(g.dot())}".encode()
    fake.Source = lambda text: types.SimpleNamespace(pipe=lambda format: (_ for _ in ()).throw(OSError("no dot")))
    with pytest.raises(RuntimeError, match="drawing .png needs Graphviz's dot program on the PATH"):
        g.render(str(tmp_path / "g.png"))
    assert sorted(os.listdir(tmp_path)) == ["g.dot", "g.svg"]
    with pytest.raises(ValueError, match="must end in .dot, .svg or .png"):
        g.render(str(tmp_path / "g.pdf"))


def test_graph_refuses_a_tensor_without_one():
    with pytest.raises(ValueError, match=r"graph: expected a Tensor that requires grad .*, got a Tensor of shape \(2,\)"):
        minires.graph(minires.tensor(np.ones(2)))
    y = minires.tensor(np.ones(2), requires_grad=True).sum()
    y.backward()
    with pytest.raises(ValueError, match="backward has already freed"):
        minires.graph(y)


def test_graph_command(tmp_path, capsys):
    from minires.cli import main
    assert main(["graph", "resnet18", "--small-input", "--input", "1,3,16,16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#0 LinearBackward  (1, 1000) float32") and "plan " in out
    assert out.splitlines()[-1].startswith("130 nodes (62 leaves), input (1, 3, 16, 16)")
    assert main(["graph", "resnet18", "--input", "1,3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minires graph: error: --input must be N,C,H,W") and err.count("\n") == 1


def test_graph_command_writes_a_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "minires", "graph", "resnet18", "--small-input", "--input", "1,3,16,16",
                          "--out", str(tmp_path / "r.dot")], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.dot").read_text().startswith("digraph") and out.stdout.endswith(f"written to {tmp_path / 'r.dot'}\n")
