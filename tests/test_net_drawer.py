"""nbcaffe.net_drawer: the DOT graph compared structurally (nodes, styles, edges), pydot's
graph against the plain DOT text, plans, the command line, and rendering when Graphviz's
``dot`` is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from nbcaffe import brew, core, model_helper, net_drawer
from nbcaffe.proto import caffe2_pb2
from tests._paths import REPO

# pydot 4.0.1's parser calls pyparsing names that pyparsing 3.3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")

HAVE_DOT = shutil.which("dot") is not None
NO_DOT = "Graphviz's `dot` program is not installed (apt-get install graphviz)"

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_NODE = re.compile(rf"^\s*({_QUOTED})(?: \[(.*)\])?;$")
_EDGE = re.compile(rf"^\s*({_QUOTED}) -> ({_QUOTED})(?: \[(.*)\])?;$")
_ATTR = re.compile(rf"(\w+)=({_QUOTED})")


def parse_dot(text):
    """({node: {attr: value}}, [(src, dst)], {graph attr: value}) of the DOT that GetDotText writes."""
    lines = text.strip().splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}", text
    nodes, edges, graph = {}, [], {}
    for line in lines[1:-1]:
        edge = _EDGE.match(line)
        if edge:
            edges.append((json.loads(edge.group(1)), json.loads(edge.group(2))))
            continue
        node = _NODE.match(line)
        if node:
            attrs = {k: json.loads(v) for k, v in _ATTR.findall(node.group(2) or "")}
            nodes[json.loads(node.group(1))] = attrs
            continue
        key, _, value = line.strip().rstrip(";").partition("=")
        graph[key] = json.loads(value)
    return nodes, edges, graph


def small_training_net():
    model = model_helper.ModelHelper("drawn")
    fc = brew.fc(model, "data", "fc", 3, 2)
    brew.relu(model, fc, fc)  # in place: a second version of 'fc'
    loss = model.net.AveragedLoss(fc, "loss")
    model.AddGradientOperators([loss])
    return model


def test_blobs_and_operators_by_shape_colour_and_versions():
    nodes, edges, graph = parse_dot(net_drawer.GetDotText(small_training_net().net, rankdir="TB"))
    assert graph == {"rankdir": "TB"}
    ops = {n for n, a in nodes.items() if a["shape"] == "box"}
    blobs = {n for n, a in nodes.items() if a["shape"] == "octagon"}
    assert ops | blobs == set(nodes)
    assert ops == {"FC (op#0)", "Relu (op#1)", "AveragedLoss (op#2)", "ConstantFill (op#3)",
                   "AveragedLossGradient (op#4)", "ReluGradient (op#5)", "FCGradient (op#6)"}
    forward = {"FC (op#0)", "Relu (op#1)", "AveragedLoss (op#2)"}  # the seed ConstantFill counts as backward
    for op in ops:
        expected = net_drawer.OP_STYLE if op in forward else net_drawer.GRADIENT_OP_STYLE
        assert {k: nodes[op][k] for k in expected} == expected, op
    assert {nodes[b]["label"] for b in blobs} == {"data", "fc_w", "fc_b", "fc", "loss", "loss_autogen_grad",
                                                  "fc_grad", "fc_w_grad", "fc_b_grad", "data_grad"}
    assert nodes["fc (2)"]["label"] == "fc"  # Relu wrote fc again: a new node, no cycle
    assert "color" not in nodes["fc"] and nodes["fc_grad"]["color"] == net_drawer.GRADIENT_BLOB_STYLE["color"]
    assert ("FC (op#0)", "fc") in edges and ("fc", "Relu (op#1)") in edges and ("Relu (op#1)", "fc (2)") in edges
    assert ("fc (2)", "AveragedLoss (op#2)") in edges
    assert ("FCGradient (op#6)", "fc_w_grad") in edges and ("data", "FCGradient (op#6)") in edges
    for src, dst in edges:  # every edge joins a blob and an op
        assert (src in ops) != (dst in ops), (src, dst)
    assert len(edges) == len(set(edges))


def test_minimal_graph_has_only_operators():
    net = core.Net("diamond")
    a = net.Relu("x", "a")
    b = net.Sigmoid(a, "b")
    net.Add([a, b], "c")
    nodes, edges, _ = parse_dot(net_drawer.GetDotText(net, minimal=True))
    assert set(nodes) == {"Relu (op#0)", "Sigmoid (op#1)", "Add (op#2)"}
    assert sorted(edges) == sorted([("Relu (op#0)", "Sigmoid (op#1)"), ("Relu (op#0)", "Add (op#2)"),
                                    ("Sigmoid (op#1)", "Add (op#2)")])
    _, edges, _ = parse_dot(net_drawer.GetDotText(net, minimal=True, minimal_dependency=True))
    assert sorted(edges) == sorted([("Relu (op#0)", "Sigmoid (op#1)"), ("Sigmoid (op#1)", "Add (op#2)")])


def test_inputs_accepted_named_ops_and_append_output():
    net = core.Net("named")
    net.Relu("x", "y", name="act")
    proto = net.Proto()
    texts = {net_drawer.GetDotText(x, name="g") for x in (net, proto, proto.SerializeToString(), list(proto.op))}
    assert len(texts) == 1
    nodes, _, _ = parse_dot(net_drawer.GetDotText(proto, append_output=True))
    assert "act/Relu (op#0)\ny" in nodes
    with pytest.raises(TypeError, match="OperatorDefs"):
        net_drawer.GetDotText(["not an op"])


def test_pydot_graph_matches_dot_text():
    pydot = pytest.importorskip("pydot", reason="pydot is the optional 'viz' extra")
    model = small_training_net()
    for minimal in (False, True):
        if minimal:
            graph = net_drawer.GetPydotGraphMinimal(model.net, rankdir="TB")
        else:
            graph = net_drawer.GetPydotGraph(model.net, rankdir="TB")
        assert isinstance(graph, pydot.Dot)
        mine = parse_dot(net_drawer.GetDotText(model.net, rankdir="TB", minimal=minimal))
        theirs = pydot.graph_from_dot_data(graph.to_string())[0]
        names = {json.loads(n.get_name()) for n in theirs.get_nodes() if n.get_name() not in ("node", "edge")}
        assert names == set(mine[0])
        edges = sorted((json.loads(e.get_source()), json.loads(e.get_destination())) for e in theirs.get_edges())
        assert edges == sorted(mine[1])
        # and the plain writer's text is valid DOT for pydot's parser too
        reparsed = pydot.graph_from_dot_data(net_drawer.GetDotText(model.net, minimal=minimal))[0]
        assert len(reparsed.get_edges()) == len(mine[1])


def test_custom_node_producers():
    pydot = pytest.importorskip("pydot", reason="pydot is the optional 'viz' extra")
    net = core.Net("custom")
    net.Relu("x", "y")
    graph = net_drawer.GetPydotGraph(
        net, op_node_producer=lambda op, i: pydot.Node(f"op{i}", shape="ellipse"),
        blob_node_producer=net_drawer.GetBlobNodeProducer(shape="box3d"))
    text = graph.to_string()
    assert "op0" in text and "ellipse" in text and "box3d" in text
    node = net_drawer.GetOpNodeProducer(True, shape="box")(net.Proto().op[0], 0)
    assert json.loads(node.get_name()) == "Relu (op#0)\ny"


def _plan():
    init, train = core.Net("init"), core.Net("train")
    init.ConstantFill([], "x", shape=[1], value=1.0)
    train.Relu("x", "x")
    plan = core.Plan("plan")
    plan.AddStep(core.execution_step("init_step", init))
    plan.AddStep(core.execution_step("train_step", train, num_iter=3))
    return plan


def test_operator_map_and_plan_graph():
    plan = _plan()
    ops = net_drawer.GetOperatorMapForPlan(plan.Proto())
    assert {k: [op.type for op in v] for k, v in ops.items()} == {"plan_init": ["ConstantFill"],
                                                                  "plan_train": ["Relu"]}
    pydot = pytest.importorskip("pydot", reason="pydot is the optional 'viz' extra")
    graph = pydot.graph_from_dot_data(net_drawer.GetPlanGraph(plan.Proto()).to_string())[0]
    labels = sorted(json.loads(n.get("label")) for n in graph.get_nodes() if n.get("label"))
    assert labels == ["init", "init_step\n", "train", "train_step\n\nx3"]
    assert len(graph.get_edges()) == 3  # step -> step, and each step -> its net


def _write_net(tmp_path, binary=True):
    net = small_training_net().net.Proto()
    path = tmp_path / ("net.pb" if binary else "net.pbtxt")
    if binary:
        path.write_bytes(net.SerializeToString())
    else:
        path.write_text(str(net))
    return path, net


@pytest.mark.parametrize("binary", [True, False])
def test_command_line_writes_dot_and_says_when_dot_is_missing(tmp_path, monkeypatch, capsys, binary):
    path, net = _write_net(tmp_path, binary)
    monkeypatch.setattr(net_drawer.shutil, "which", lambda name: None)
    assert net_drawer.main(["--input", str(path), "--output_prefix", str(tmp_path / "out") + "/"]) == 0
    dot_file = tmp_path / "out" / f"{net.name}.dot"
    assert parse_dot(dot_file.read_text()) == parse_dot(net_drawer.GetDotText(net))
    assert not list((tmp_path / "out").glob("*.png"))
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_command_line_reads_plans_and_minimal(tmp_path, monkeypatch):
    monkeypatch.setattr(net_drawer.shutil, "which", lambda name: None)
    path = tmp_path / "plan.pb"
    path.write_bytes(_plan().Proto().SerializeToString())
    net_drawer.main(["--input", str(path), "--output_prefix", str(tmp_path) + "/", "--minimal"])
    assert sorted(p.name for p in tmp_path.glob("*.dot")) == ["plan_init.dot", "plan_train.dot"]
    garbage = tmp_path / "junk.pb"
    garbage.write_bytes(b"\x00\x01 not a net")
    with pytest.raises(Exception, match="neither a NetDef"):
        net_drawer.main(["--input", str(garbage)])


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_command_line_renders_png_and_svg(tmp_path):
    path, net = _write_net(tmp_path)
    prefix = str(tmp_path / "pic_")
    subprocess.run([sys.executable, "-m", "nbcaffe.net_drawer", "--input", str(path), "--output_prefix", prefix,
                    "--rankdir", "TB"], check=True, cwd=REPO, capture_output=True)
    assert (tmp_path / f"pic_{net.name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / f"pic_{net.name}.svg").read_bytes()


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_render_and_notebook_picture():
    picture = net_drawer.draw(small_training_net().net)
    svg = picture._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "FCGradient (op#6)" in svg
    assert picture.png()[:4] == b"\x89PNG"
    with pytest.raises(Exception, match="dot -Tsvg failed"):
        net_drawer.render("digraph { this is not dot", "svg")


def test_picture_without_graphviz_shows_dot_text(monkeypatch):
    monkeypatch.setattr(net_drawer.shutil, "which", lambda name: None)
    picture = net_drawer.draw(small_training_net().net, minimal=True)
    assert picture._repr_svg_() is None
    assert "apt-get install graphviz" in repr(picture) and picture.dot in repr(picture)
    with pytest.raises(net_drawer.GraphvizNotFound, match="not installed"):
        picture.png()


def test_plan_def_type_is_rejected_by_net_drawing():
    with pytest.raises(TypeError, match="GetOperatorMapForPlan"):
        net_drawer.GetDotText(caffe2_pb2.PlanDef(name="p"))
