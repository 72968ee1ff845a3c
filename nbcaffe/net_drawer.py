"""Draw nets as graphs (Caffe2's ``net_drawer``): DOT text always, pictures through Graphviz.

Two ways in, one drawing:

* :func:`GetPydotGraph` / :func:`GetPydotGraphMinimal` / :func:`GetPlanGraph` return a
  ``pydot.Dot`` as Caffe2's did (``pip install nbcaffe[viz]``; pydot is imported on first use).
* :func:`GetDotText` returns the same graph as DOT text and needs nothing installed;
  :func:`draw` wraps it in a :class:`NetPicture` that Jupyter shows as an SVG when Graphviz's
  ``dot`` program is installed (Debian: ``apt-get install graphviz``) and as DOT text otherwise.

Both are built by one walker over the operators, so they always agree.  Operators are filled
boxes (forward: green; gradient ops — ``is_gradient_op`` or a ``...Gradient``/``...Grad`` type:
orange, as is autograd's seed fill); blobs are octagons (gradient blobs, ``*_grad``: orange outline).  A blob written
again later in the net gets a new node (``fc1`` then ``fc1 (2)`` internally), as in Caffe2,
so in-place ops and parameter updates do not draw cycles.

Command line::

    python -m nbcaffe.net_drawer --input predict_net.pb --output_prefix out/ [--minimal] [--rankdir TB]

writes ``out/<net name>.dot`` for every net in the file (a NetDef or a PlanDef, binary or text
format) and ``.png``/``.svg`` pictures when ``dot`` is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict

from nbcaffe import errors, utils
from nbcaffe.proto import caffe2_pb2

OP_STYLE = {"shape": "box", "color": "#0F9D58", "style": "filled", "fontcolor": "#FFFFFF"}
GRADIENT_OP_STYLE = {"shape": "box", "color": "#E8710A", "style": "filled", "fontcolor": "#FFFFFF"}
BLOB_STYLE = {"shape": "octagon"}
GRADIENT_BLOB_STYLE = {"shape": "octagon", "color": "#E8710A"}
STEP_STYLE = OP_STYLE


class GraphvizNotFound(errors.NbcaffeError):
    """Graphviz's ``dot`` program is needed to turn DOT text into a picture."""


# ------------------------------------------------------------------ a minimal pydot-like backend

def _quote(text) -> str:
    """A DOT double-quoted string (json's escaping is DOT-compatible for what nets contain)."""
    text = str(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text  # already quoted (Caffe2's node names are json-escaped)
    return json.dumps(text)


class _Node:
    def __init__(self, name, **attrs):
        self.name = str(name)
        self.attrs = attrs

    def get_name(self):
        return _quote(self.name)


class _Edge:
    def __init__(self, src, dst, **attrs):
        self.src = src.get_name() if hasattr(src, "get_name") else _quote(src)
        self.dst = dst.get_name() if hasattr(dst, "get_name") else _quote(dst)
        self.attrs = attrs


class _Dot:
    """Just enough of ``pydot.Dot`` for the walkers below; ``to_string()`` gives DOT text."""

    def __init__(self, name="G", **attrs):
        self.name = str(name or "G")
        self.attrs = attrs
        self.nodes = {}
        self.edges = []

    def get_name(self):
        return self.name

    def add_node(self, node):
        self.nodes.setdefault(node.get_name(), node)

    def add_edge(self, edge):
        self.edges.append(edge)

    def to_string(self) -> str:
        lines = [f"digraph {_quote(self.name)} {{"]
        lines += [f"  {key}={_quote(value)};" for key, value in self.attrs.items()]
        for name, node in self.nodes.items():
            lines.append(f"  {name}{_attr_text(node.attrs)};")
        for edge in self.edges:
            lines.append(f"  {edge.src} -> {edge.dst}{_attr_text(edge.attrs)};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _attr_text(attrs) -> str:
    if not attrs:
        return ""
    return " [" + ", ".join(f"{key}={_quote(value)}" for key, value in attrs.items()) + "]"


class _MiniDot:
    """Namespace with pydot's constructor names, backed by the classes above."""

    Dot = _Dot
    Node = _Node
    Edge = _Edge


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError("GetPydotGraph needs pydot: pip install 'nbcaffe[viz]' (or pip install pydot); "
                          "net_drawer.GetDotText and net_drawer.draw work without it") from None
    return pydot


# ------------------------------------------------------------------ walking nets

def _rectify_operator_and_name(operators_or_net, name):
    """(operators, name) from a core.Net, a NetDef, serialized NetDef bytes or a list of OperatorDefs."""
    if isinstance(operators_or_net, (bytes, bytearray, str)):
        operators_or_net = utils.parse_proto(operators_or_net, caffe2_pb2.NetDef, "net")
    if isinstance(operators_or_net, caffe2_pb2.NetDef):
        return list(operators_or_net.op), name if name is not None else operators_or_net.name
    if isinstance(operators_or_net, caffe2_pb2.PlanDef):
        raise TypeError("a PlanDef holds several nets: draw each of GetOperatorMapForPlan(plan).values(), or the"
                        " steps with GetPlanGraph(plan)")
    proto = getattr(operators_or_net, "Proto", None)
    if callable(proto):
        net = proto()
        if not isinstance(net, caffe2_pb2.NetDef):
            raise TypeError(f"expected a net, got {type(net).__name__} from Proto()")
        return list(net.op), name if name is not None else net.name
    operators = list(operators_or_net)
    for op in operators:
        if not isinstance(op, caffe2_pb2.OperatorDef):
            raise TypeError(f"expected a core.Net, NetDef or OperatorDefs, got a {type(op).__name__} in the list")
    return operators, name if name is not None else "unnamed"


def is_gradient_op(op) -> bool:
    """Whether an OperatorDef belongs to a backward pass (drawn in the gradient colour): marked
    ``is_gradient_op``, a ``...Gradient``/``...Grad`` type, or autograd's seed fill (``*_autogen_grad``)."""
    return bool(op.is_gradient_op) or op.type.endswith(("Gradient", "Grad")) or \
        any(out.endswith("_autogen_grad") for out in op.output)


def _op_node_name(op, op_id, append_output):
    text = f"{op.name}/{op.type} (op#{op_id})" if op.name else f"{op.type} (op#{op_id})"
    if append_output:
        text += "".join("\n" + out for out in op.output)
    return text


def GetOpNodeProducer(append_output, **kwargs):
    """Caffe2's factory: ``producer(op, op_id) -> pydot.Node`` with style ``kwargs``
    (gradient ops get :data:`GRADIENT_OP_STYLE` unless ``kwargs`` set a colour)."""
    return _op_producer(_pydot(), append_output, kwargs or None)


def GetBlobNodeProducer(**kwargs):
    """Caffe2's factory: ``producer(node_name, label) -> pydot.Node`` with style ``kwargs``."""
    return _blob_producer(_pydot(), kwargs or None)


def _op_producer(backend, append_output=False, style=None):
    def produce(op, op_id):
        chosen = style if style is not None else (GRADIENT_OP_STYLE if is_gradient_op(op) else OP_STYLE)
        return backend.Node(_quote(_op_node_name(op, op_id, append_output)), **chosen)

    return produce


def _blob_producer(backend, style=None):
    def produce(node_name, label):
        chosen = style
        if chosen is None:
            chosen = GRADIENT_BLOB_STYLE if json.loads(label).endswith("_grad") else BLOB_STYLE
        return backend.Node(node_name, label=label, **chosen)

    return produce


def _build_full(backend, operators, name, rankdir, op_node_producer, blob_node_producer):
    graph = backend.Dot(name, rankdir=rankdir)
    nodes = {}
    versions = defaultdict(int)
    added = set()

    def add(node):  # each node once (pydot would print a repeated node twice)
        if node.get_name() not in added:
            added.add(node.get_name())
            graph.add_node(node)

    def blob_node(blob):
        version = versions[blob]
        node_id = _quote(blob if version == 0 else f"{blob} ({version + 1})")
        return blob_node_producer(node_id, label=_quote(blob))

    for op_id, op in enumerate(operators):
        op_node = op_node_producer(op, op_id)
        add(op_node)
        for blob in op.input:
            if blob not in nodes:
                nodes[blob] = blob_node(blob)
            add(nodes[blob])
            graph.add_edge(backend.Edge(nodes[blob], op_node))
        for blob in op.output:
            if blob in nodes:
                versions[blob] += 1  # written again: a new node, so in-place ops draw no cycle
            nodes[blob] = blob_node(blob)
            add(nodes[blob])
            graph.add_edge(backend.Edge(op_node, nodes[blob]))
    return graph


def _build_minimal(backend, operators, name, rankdir, minimal_dependency, op_node_producer):
    graph = backend.Dot(name, rankdir=rankdir)
    producer_of = {}
    ancestry = defaultdict(set)
    for op_id, op in enumerate(operators):
        op_node = op_node_producer(op, op_id)
        key = op_node.get_name()
        graph.add_node(op_node)
        parents = []
        for blob in op.input:
            parent = producer_of.get(blob)
            if parent is not None and parent[0] not in [p[0] for p in parents]:
                parents.append(parent)
        for parent_key, _ in parents:
            ancestry[key].add(parent_key)
            ancestry[key].update(ancestry[parent_key])
        for parent_key, parent_node in parents:
            implied = minimal_dependency and any(parent_key in ancestry[other] for other, _ in parents)
            if not implied:
                graph.add_edge(backend.Edge(parent_node, op_node))
        for blob in op.output:
            producer_of[blob] = (key, op_node)
    return graph


# ------------------------------------------------------------------ Caffe2's API (pydot)

def GetPydotGraph(operators_or_net, name=None, rankdir="LR", op_node_producer=None, blob_node_producer=None):
    """The net as a ``pydot.Dot``: operator boxes, blob octagons, edges along the data flow.

    Args:
        operators_or_net: a core.Net, NetDef, or list of OperatorDefs.
        name: graph name (default: the net's name).
        rankdir: Graphviz direction, 'LR' (left to right), 'TB', 'BT' or 'RL'.
        op_node_producer: ``f(op, op_id) -> pydot.Node`` (default :func:`GetOpNodeProducer`).
        blob_node_producer: ``f(node_name, label) -> pydot.Node``.

    Example:
        >>> graph = GetPydotGraph(model.net, rankdir="TB")   # doctest: +SKIP
        >>> png = graph.create_png()                          # needs Graphviz's dot  # doctest: +SKIP
    """
    pydot = _pydot()
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    return _build_full(pydot, operators, name, rankdir, op_node_producer or _op_producer(pydot),
                       blob_node_producer or _blob_producer(pydot))


def GetPydotGraphMinimal(operators_or_net, name=None, rankdir="LR", minimal_dependency=False,
                         op_node_producer=None):
    """Operators only (no blob nodes): an edge from each op to every op that reads one of its
    outputs; with ``minimal_dependency`` edges implied by a longer path are left out."""
    pydot = _pydot()
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    return _build_minimal(pydot, operators, name, rankdir, minimal_dependency,
                          op_node_producer or _op_producer(pydot))


def GetOperatorMapForPlan(plan_def):
    """{'<plan>_<net>': operators} for every net of a PlanDef (Caffe2's naming)."""
    operator_map = {}
    for net_id, net in enumerate(plan_def.network):
        key = f"{plan_def.name}_{net.name}" if net.HasField("name") else f"{plan_def.name}_network_{net_id}"
        operator_map[key] = net.op
    return operator_map


def _step_label(step):
    label = [step.name + "\n"]
    if step.report_net:
        label.append(f"Reporter: {step.report_net}")
    if step.should_stop_blob:
        label.append(f"Stopper: {step.should_stop_blob}")
    if step.concurrent_substeps:
        label.append("Concurrent")
    if step.only_once:
        label.append("Once")
    if step.HasField("num_iter"):
        label.append(f"x{step.num_iter}")
    return "\n".join(label)


def _draw_steps(backend, steps, graph, prefix="step"):
    nodes = []
    for i, step in enumerate(steps):
        node = backend.Node(_quote(f"{prefix}{i}"), label=_quote(_step_label(step)), **STEP_STYLE)
        graph.add_node(node)
        if nodes:
            graph.add_edge(backend.Edge(nodes[-1], node))
        nodes.append(node)
        if step.network:
            children = []
            for name in step.network:
                child = backend.Node(_quote(f"{prefix}{i}/{name}"), label=_quote(name), **BLOB_STYLE)
                graph.add_node(child)
                if children:
                    graph.add_edge(backend.Edge(children[-1], child))
                children.append(child)
        else:
            children = _draw_steps(backend, step.substep, graph, prefix=f"{prefix}{i}.")
        for child in children[:1] if not step.concurrent_substeps else children:
            graph.add_edge(backend.Edge(node, child, arrowhead="dot", style="dashed"))
    return nodes


def GetPlanGraph(plan_def, name=None, rankdir="TB"):
    """A PlanDef's execution steps as a ``pydot.Dot``: steps in order, each pointing (dashed)
    at its nets or substeps."""
    pydot = _pydot()
    plan_def = getattr(plan_def, "Proto", lambda: plan_def)()
    graph = pydot.Dot(name or plan_def.name or "plan", rankdir=rankdir)
    _draw_steps(pydot, plan_def.execution_step, graph)
    return graph


# ------------------------------------------------------------------ no-dependency path

def GetDotText(operators_or_net, name=None, rankdir="LR", minimal=False, minimal_dependency=False,
               append_output=False) -> str:
    """The graph :func:`GetPydotGraph` (or, with ``minimal``, :func:`GetPydotGraphMinimal`)
    draws, as DOT text; needs neither pydot nor Graphviz.

    Example:
        >>> from nbcaffe import core
        >>> net = core.Net("tiny"); _ = net.Relu("x", "y")
        >>> print(GetDotText(net))  # doctest: +NORMALIZE_WHITESPACE
        digraph "tiny" {
          rankdir="LR";
          "Relu (op#0)" [shape="box", color="#0F9D58", style="filled", fontcolor="#FFFFFF"];
          "x" [label="x", shape="octagon"];
          "y" [label="y", shape="octagon"];
          "x" -> "Relu (op#0)";
          "Relu (op#0)" -> "y";
        }
        <BLANKLINE>
    """
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    ops = _op_producer(_MiniDot, append_output)
    if minimal:
        graph = _build_minimal(_MiniDot, operators, name, rankdir, minimal_dependency, ops)
    else:
        graph = _build_full(_MiniDot, operators, name, rankdir, ops, _blob_producer(_MiniDot))
    return graph.to_string()


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def render(dot_text, fmt="svg") -> bytes:
    """Run Graphviz's ``dot -T<fmt>`` on DOT text; GraphvizNotFound when it is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound(f"cannot render {fmt}: Graphviz's `dot` program is not installed (Debian/Ubuntu:"
                               f" apt-get install graphviz; macOS: brew install graphviz); the DOT text is"
                               f" still available")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, check=False)
    if done.returncode != 0:
        raise errors.NbcaffeError(f"dot -T{fmt} failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout


class NetPicture:
    """A drawn net for notebooks: shown as SVG when Graphviz is installed, else as DOT text.

    ``dot`` holds the DOT text; ``svg()``/``png()`` render it (GraphvizNotFound without Graphviz).
    """

    def __init__(self, dot_text):
        self.dot = dot_text

    def svg(self) -> str:
        return render(self.dot, "svg").decode("utf-8")

    def png(self) -> bytes:
        return render(self.dot, "png")

    def _repr_svg_(self):
        return self.svg() if dot_available() else None  # None: Jupyter falls back to the text form

    def __repr__(self):
        if dot_available():
            return f"<NetPicture: {len(self.dot.splitlines())} lines of DOT; displays as SVG>"
        return ("Graphviz's `dot` is not installed (apt-get install graphviz), so here is the DOT text:\n"
                + self.dot)


def draw(operators_or_net, name=None, rankdir="LR", minimal=False, minimal_dependency=False,
         append_output=False) -> NetPicture:
    """A :class:`NetPicture` of the net (arguments as :func:`GetDotText`); in Jupyter,
    ``IPython.display.display(draw(net))`` shows it inline."""
    return NetPicture(GetDotText(operators_or_net, name, rankdir, minimal, minimal_dependency, append_output))


# ------------------------------------------------------------------ command line

def _read_graphs(path):
    """{graph name: operators} from a NetDef or PlanDef file (binary or text)."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    candidates = []
    for cls in (caffe2_pb2.NetDef, caffe2_pb2.PlanDef):
        try:
            message = utils.parse_text(text, cls) if text is not None else None
        except errors.ProtoError:
            message = None
        if message is None:
            try:
                message = cls()
                message.ParseFromString(data)
                if message.FindInitializationErrors():
                    continue
            except Exception:  # noqa: BLE001  (any decode failure: try the next message type)
                continue
        candidates.append(message)
    for message in candidates:
        if isinstance(message, caffe2_pb2.PlanDef) and len(message.network):
            return GetOperatorMapForPlan(message)
    for message in candidates:
        if isinstance(message, caffe2_pb2.NetDef) and len(message.op):
            return {message.name or "net": message.op}
    raise errors.ProtoError(f"{path}: neither a NetDef with operators nor a PlanDef with nets"
                            f" (binary or text format)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbcaffe.net_drawer",
                                     description="Draw the nets of a NetDef/PlanDef file (DOT, and PNG/SVG"
                                                 " when Graphviz's dot is installed).")
    parser.add_argument("--input", required=True, help="NetDef or PlanDef file, binary or text format")
    parser.add_argument("--output_prefix", default="", help="prefix of the written files (may be a folder/)")
    parser.add_argument("--minimal", action="store_true", help="operators only, no blob nodes")
    parser.add_argument("--minimal_dependency", action="store_true", help="with --minimal: drop implied edges")
    parser.add_argument("--append_output", action="store_true", help="list each op's outputs in its box")
    parser.add_argument("--rankdir", default="LR", choices=["LR", "TB", "BT", "RL"])
    parser.add_argument("--format", action="append", choices=["png", "svg", "pdf"],
                        help="picture format(s) to render (default: png and svg)")
    args = parser.parse_args(argv)
    graphs = _read_graphs(args.input)
    formats = args.format or ["png", "svg"]
    folder = os.path.dirname(args.output_prefix)
    if folder:
        os.makedirs(folder, exist_ok=True)
    have_dot = dot_available()
    for key, operators in graphs.items():
        text = GetDotText(list(operators), name=key, rankdir=args.rankdir, minimal=args.minimal,
                          minimal_dependency=args.minimal_dependency, append_output=args.append_output)
        base = args.output_prefix + key.replace("/", "_")
        with open(base + ".dot", "w") as handle:
            handle.write(text)
        print(f"wrote {base}.dot")
        if have_dot:
            for fmt in formats:
                with open(f"{base}.{fmt}", "wb") as handle:
                    handle.write(render(text, fmt))
                print(f"wrote {base}.{fmt}")
    if not have_dot:
        print("Graphviz's `dot` program is not installed, so only DOT text was written; install it"
              " (Debian/Ubuntu: apt-get install graphviz) for PNG/SVG, or paste the .dot file into any"
              " Graphviz viewer.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
