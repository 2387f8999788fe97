"""The graph backward will walk, as a tree or a drawing: ``minires.graph(tensor)``, ``minires graph MODEL``.

    g = minires.graph(loss, params=dict(model.named_parameters()))
    print(g)                 # an indented tree, from the tensor back to the leaves
    g.dot()                  # the same as Graphviz DOT text
    g.render("net.svg")      # drawn by Graphviz (pip install minires[graph], and Graphviz's dot program)

A node is an op's graph node (its grad_fn: Conv2dBackward, BatchNormBackward, ...) or a leaf that
requires grad (AccumulateGrad). Each shows the shape and dtype of what it made, the bytes of the
arrays its forward saved for its backward (what training holds in memory until backward frees it),
and for a convolution the plan that computes it (minires/plans). The walk follows next_functions,
the edges backward follows. A node used twice is drawn once in DOT; the tree names it again as "#k".
Call it before backward, which frees the graph as it goes.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np

from . import plans
from .autograd.function import AccumulateGrad
from .autograd.tensor import Tensor
from .device import is_array
from .explain import _plan_name, _shape
from .serialization import write_atomically

__all__ = ["graph", "Graph", "GraphNode"]


@dataclass
class GraphNode:
    name: str             # "Conv2dBackward", ..., "AccumulateGrad" for a leaf
    shape: tuple          # of the op's output (of the leaf)
    dtype: np.dtype
    saved_bytes: int      # arrays the op's forward kept for its backward, less leaves' data (0 for a leaf)
    plan: str = None      # a convolution's plan, e.g. "winograd F(4x4,3x3)"
    label: str = None     # a leaf's name, from graph()'s params
    inputs: tuple = ()    # indices into Graph.nodes of the nodes this one's inputs came from

    def describe(self, sep="  "):
        """Name, label, shape and dtype, saved bytes, plan, joined by sep."""
        parts = [self.name] + ([self.label] if self.label else []) + [f"{tuple(self.shape)} {self.dtype}"]
        parts += [f"saved {_size(self.saved_bytes)}"] if self.saved_bytes else []
        return sep.join(parts + ([f"plan {self.plan}"] if self.plan else []))


def graph(tensor, params=None):
    """The Graph recorded for ``tensor`` (a Tensor that requires grad), as it is before backward
    frees it. params: {name: Tensor} (e.g. dict(model.named_parameters())) names the leaves."""
    if not isinstance(tensor, Tensor) or not tensor.requires_grad:
        raise ValueError(f"graph: expected a Tensor that requires grad (one with a graph), got {_what(tensor)}")
    root = tensor.grad_fn or AccumulateGrad(tensor)
    if not isinstance(root, AccumulateGrad) and root.inputs is None:
        raise ValueError("graph: backward has already freed this tensor's graph; call graph() before backward")
    names = {id(t): k for k, t in (params or {}).items()}
    order, facts = _walk(root, tensor.shape, tensor.dtype)
    index = {fn: i for i, fn in enumerate(order)}
    return Graph([_node(fn, *facts[fn], names, tuple(index[f] for f, _, _ in _edges(fn))) for fn in order])


class Graph:
    """nodes: GraphNodes, nodes[0] the tensor's, then depth first along next_functions."""

    def __init__(self, nodes):
        self.nodes = nodes

    def __str__(self):
        """The tree: each node under the one that took it as an input, indented, numbered #k; a node
        reached again is written "#k (above)" instead of its subtree again."""
        lines, printed, stack = [], set(), [(0, 0)]
        while stack:
            i, depth = stack.pop()
            if i in printed:
                lines.append(f"{'  ' * depth}#{i} (above)")
                continue
            printed.add(i)
            lines.append(f"{'  ' * depth}#{i} {self.nodes[i].describe()}")
            stack.extend((j, depth + 1) for j in reversed(self.nodes[i].inputs))
        return "\n".join(lines)

    def __repr__(self):
        return f"<Graph of {len(self.nodes)} nodes>"

    @property
    def saved_bytes(self):
        """What the whole forward saved for backward: the memory training holds until backward."""
        return sum(n.saved_bytes for n in self.nodes)

    def dot(self):
        """Graphviz DOT text: a box per op, a filled box per leaf, an edge from each input to its op."""
        lines = ["digraph minires {", '  node [shape=box, fontname="monospace", fontsize=10];']
        for i, n in enumerate(self.nodes):
            fill = ", style=filled, fillcolor=lightblue" if n.name == "AccumulateGrad" else ""
            label = n.describe("\n").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'  n{i} [label="{label}"{fill}];')
        lines += [f"  n{j} -> n{i};" for i, n in enumerate(self.nodes) for j in n.inputs]
        return "\n".join(lines + ["}"]) + "\n"

    def render(self, path):
        """Write the graph to ``path``: DOT text for .dot, a drawing for .svg or .png (Graphviz)."""
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        if fmt not in ("dot", "svg", "png"):
            raise ValueError(f"Graph.render: {path!r} must end in .dot, .svg or .png")
        data = self.dot().encode() if fmt == "dot" else _draw(self.dot(), fmt)
        write_atomically(path, lambda f: f.write(data), "graph.render")


def _draw(text, fmt):
    """DOT text drawn as fmt by Graphviz, through the graphviz package."""
    try:
        import graphviz
    except ImportError:
        raise RuntimeError(f"Graph.render: drawing .{fmt} needs the graphviz Python package: pip install "
                           "minires[graph] (and Graphviz's dot program), or write .dot") from None
    try:
        return graphviz.Source(text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RuntimeError(f"Graph.render: drawing .{fmt} needs Graphviz's dot program on the PATH "
                           "(apt install graphviz, brew install graphviz), or write .dot") from None


def _walk(root, shape, dtype):
    """The nodes reachable from root, depth first (each once), and {node: (shape, dtype)} of what
    each made: read off the edge that reached it, as a node does not keep its output."""
    order, seen, facts, stack = [], set(), {root: (shape, dtype)}, [root]
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        order.append(fn)
        edges = _edges(fn)
        facts.update((f, (s, d)) for f, s, d in edges if f not in facts)
        stack.extend(f for f, _, _ in reversed(edges) if f not in seen)
    return order, facts


def _edges(fn):
    """(next node, shape, dtype) for each of fn's inputs that gets a gradient, in argument order."""
    if isinstance(fn, AccumulateGrad):
        return []
    tensors = [t for t in fn.inputs if t is not None]  # next_functions has an entry per Tensor argument
    return [(f, t.shape, t.dtype) for (f, _), t in zip(fn.next_functions, tensors) if f is not None]


def _node(fn, shape, dtype, names, inputs):
    if isinstance(fn, AccumulateGrad):
        return GraphNode(fn.name(), shape, dtype, 0, label=names.get(id(fn.variable)), inputs=inputs)
    plan = getattr(fn, "plan", None)
    return GraphNode(fn.name(), shape, dtype, _saved_bytes(fn),
                     plan=_plan_name(plan) if isinstance(plan, plans.ConvPlan) else None, inputs=inputs)


def _saved_bytes(fn):
    """Bytes of the arrays on node fn (saved_tensors and any other), each counted once, less the
    data of leaves among its inputs (a convolution keeps its weight as it is): what lives on only
    while the graph does."""
    leaves = {id(t.data) for t in fn.inputs if isinstance(t, Tensor)}
    arrays = {}
    for value in vars(fn).values():
        for a in value if isinstance(value, tuple) else (value,):
            if is_array(a) and id(a) not in leaves:
                arrays[id(a)] = a.nbytes
    return sum(arrays.values())


# --- the command line: minires graph MODEL [--input N,C,H,W] [--small-input] [--out FILE] ----------
def add_arguments(parser):
    parser.add_argument("model", help="a model of the zoo, e.g. resnet18")
    parser.add_argument("--input", default=None, help="input shape N,C,H,W (default 1,3,224,224; 1,3,32,32 for the "
                        "CIFAR networks)")
    parser.add_argument("--small-input", action="store_true", help="the 3x3 stem without max-pool for 32x32 images")
    parser.add_argument("--out", default=None, help="write the graph to FILE.dot, .svg or .png instead of printing "
                        "the tree")


def run(args):
    """The graph of the model's output in training mode, for a float32 input of zeros."""
    from . import models
    try:
        model = models.build(args.model, small_input=args.small_input)
        shape = _shape(args.input or ("1,3,32,32" if models.is_cifar(args.model) else "1,3,224,224"))
        g = graph(model(Tensor(np.zeros(shape, np.float32))), dict(model.named_parameters()))
        if args.out:
            g.render(args.out)
        else:
            print(g)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"minires graph: error: {e}", file=sys.stderr)
        return 2
    leaves = sum(n.name == "AccumulateGrad" for n in g.nodes)
    print(f"{len(g.nodes)} nodes ({leaves} leaves), input {shape}, the forward saved {_size(g.saved_bytes)} for "
          f"backward" + (f"; written to {args.out}" if args.out else ""))
    return 0


def _size(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.4g} GiB"


def _what(x):
    return f"a Tensor of shape {x.shape} that does not require grad" if isinstance(x, Tensor) else type(x).__name__
