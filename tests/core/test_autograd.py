"""AddGradientOperators: Caffe2's naming, accumulation, in-place handling, device/engine
inheritance, custom makers — and whole-net gradients checked by finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import autograd, brew, core, model_helper, registry, workspace
from nbcaffe.proto import caffe2_pb2


def ops_of(net, start=0):
    return [(op.type, list(op.input), list(op.output)) for op in net.Proto().op[start:]]


def net_loss_and_grads(build, feeds, wrt):
    """Run a freshly built net; return (loss, {name: gradient}) with float64 feeds."""
    workspace.ResetWorkspace()
    core.Net._net_names_used.clear()
    net, loss = build()
    grad_map = net.AddGradientOperators([loss])
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(net)
    return float(workspace.FetchBlob(loss)), {w: workspace.FetchBlob(grad_map[w]) for w in wrt}


def check_net_gradient(build, feeds, wrt, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Directional central differences of the whole net's loss vs AddGradientOperators."""
    rng = np.random.default_rng(0)
    _, grads = net_loss_and_grads(build, feeds, wrt)
    for name in wrt:
        d = rng.standard_normal(feeds[name].shape)
        plus = dict(feeds, **{name: feeds[name] + eps * d})
        minus = dict(feeds, **{name: feeds[name] - eps * d})
        numeric = (net_loss_and_grads(build, plus, [])[0] - net_loss_and_grads(build, minus, [])[0]) / (2 * eps)
        analytic = float((grads[name] * d).sum())
        assert np.isclose(analytic, numeric, rtol=rtol, atol=atol), (name, analytic, numeric)


def test_caffe2_naming_seed_and_map():
    net = core.Net("naming")
    y = net.FC(["x", "w", "b"], "y")
    loss = net.AveragedLoss(y, "loss")
    grad_map = net.AddGradientOperators([loss])
    assert ops_of(net, 2) == [
        ("ConstantFill", ["loss"], ["loss_autogen_grad"]),
        ("AveragedLossGradient", ["y", "loss_autogen_grad"], ["y_grad"]),
        ("FCGradient", ["x", "w", "y_grad"], ["w_grad", "b_grad", "x_grad"]),
    ]
    seed = net.Proto().op[2]
    assert next(a for a in seed.arg if a.name == "value").f == 1.0
    assert all(op.is_gradient_op for op in net.Proto().op[3:])
    assert {str(k): str(v) for k, v in grad_map.items() if str(k) in ("w", "b", "x", "y")} == {
        "w": "w_grad", "b": "b_grad", "x": "x_grad", "y": "y_grad"}
    assert grad_map["w"] == "w_grad"  # BlobReference keys compare with strings


def test_blob_read_twice_gets_autosplit_partials_and_one_sum():
    net = core.Net("split")
    a = net.Sigmoid("x", "a")
    b = net.Tanh("x", "b")
    s = net.Sum([a, b], "s")
    loss = net.AveragedLoss(s, "loss")
    net.AddGradientOperators([loss])
    grad_ops = ops_of(net, 4)
    outputs = [o for _t, _i, outs in grad_ops for o in outs]
    assert "_x_grad_autosplit_0" in outputs and "_x_grad_autosplit_1" in outputs
    sums = [g for g in grad_ops if g[0] == "Sum"]
    assert sums == [("Sum", ["_x_grad_autosplit_0", "_x_grad_autosplit_1"], ["x_grad"])]
    x = np.random.default_rng(1).standard_normal((3, 2))

    def build():
        n = core.Net("split")
        n.Sum([n.Sigmoid("x", "a"), n.Tanh("x", "b")], "s")
        return n, n.AveragedLoss("s", "loss")

    check_net_gradient(build, {"x": x}, ["x"])


def test_sum_gradient_aliases_the_output_gradient():
    net = core.Net("alias")
    net.Sum(["a", "b"], "s")
    loss = net.AveragedLoss("s", "loss")
    grad_map = net.AddGradientOperators([loss])
    assert grad_map["a"] == "s_grad" and grad_map["b"] == "s_grad"
    assert [t for t, _i, _o in ops_of(net, 2)] == ["ConstantFill", "AveragedLossGradient"]


def test_in_place_chain_gradients_are_correct():
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((2, 3)), "b": rng.standard_normal(2),
             "w2": rng.standard_normal((3, 2)), "b2": rng.standard_normal(3)}

    def build():
        n = core.Net("inplace")
        y = n.FC(["x", "w", "b"], "y")
        n.Relu(y, y)  # in place: Relu reads and writes y
        z = n.FC([y, "w2", "b2"], "z")
        n.Scale(z, z, scale=-3.0)  # in place again: Scale's gradient needs no forward blob
        return n, n.AveragedLoss(z, "loss")

    check_net_gradient(build, feeds, ["x", "w", "b", "w2", "b2"])
    net, loss = build()
    net.AddGradientOperators([loss])
    relu_grad = next(op for op in net.Proto().op if op.type == "ReluGradient")
    assert list(relu_grad.input) == ["y", "y_grad"] and list(relu_grad.output) == ["y_grad"]


def test_overwritten_forward_blob_is_refused_with_both_ops_named():
    net = core.Net("trap")
    y = net.Sigmoid("x", "y")
    net.Relu(y, y)  # overwrites Sigmoid's output, which SigmoidGradient needs
    loss = net.AveragedLoss(y, "loss")
    with pytest.raises(autograd.GradientError, match=r"\[Sigmoid\] \(op #0\).*op #1 Relu overwrites 'y'"):
        net.AddGradientOperators([loss])


def test_stop_gradient_stops_flow():
    net = core.Net("stop")
    h = net.Sigmoid("x", "h")
    h2 = net.StopGradient(h, "h2")
    loss = net.AveragedLoss(net.Tanh(h2, "t"), "loss")
    grad_map = net.AddGradientOperators([loss])
    assert "h2" in grad_map and "h" not in grad_map and "x" not in grad_map
    assert "SigmoidGradient" not in [t for t, _i, _o in ops_of(net)]


def test_explicit_seed_and_skip():
    net = core.Net("seeded")
    net.ConstantFill([], "x", shape=[2], value=1.0)  # skipped (data creation)
    y = net.Tanh("x", "y")
    grad_map = net.AddGradientOperators({y: "my_seed"}, skip=1)
    assert ops_of(net, 2) == [("TanhGradient", ["y", "my_seed"], ["x_grad"])]
    assert grad_map["x"] == "x_grad"


def test_gradient_ops_inherit_device_engine_and_arguments():
    net = core.Net("inherit")
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CUDA, 0)):
        y = net.LeakyRelu("x", "y", alpha=0.3, engine="CUDNN")
    loss = net.AveragedLoss(y, "loss")
    net.AddGradientOperators([loss])
    grad = next(op for op in net.Proto().op if op.type == "LeakyReluGradient")
    assert grad.device_option.device_type == caffe2_pb2.CUDA and grad.engine == "CUDNN"
    assert next(a for a in grad.arg if a.name == "alpha").f == pytest.approx(0.3)
    assert grad.is_gradient_op


def test_custom_gradient_maker_takes_precedence():
    @autograd.GradientRegistry.RegisterGradient("Tanh")
    def doubled_tanh_gradient(op, g_output):
        grad = core.CreateOperator("TanhGradient", [op.output[0], g_output[0]], [op.input[0] + "_g"])
        return [grad, core.CreateOperator("Scale", [op.input[0] + "_g"], [op.input[0] + "_grad"], scale=2.0)], \
            [op.input[0] + "_grad"]

    try:
        net = core.Net("custom")
        loss = net.AveragedLoss(net.Tanh("x", "y"), "loss")
        net.AddGradientOperators([loss])
        assert [t for t, _i, _o in ops_of(net, 2)] == ["ConstantFill", "AveragedLossGradient", "TanhGradient", "Scale"]
        x = np.array([0.3, -0.2])
        workspace.FeedBlob("x", x)
        workspace.RunNetOnce(net)
        np.testing.assert_allclose(workspace.FetchBlob("x_grad"), 2 * (1 - np.tanh(x) ** 2) / 2)
    finally:
        del autograd.GradientRegistry.gradient_registry_["Tanh"]


def test_missing_gradient_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(registry.GRADIENTS, "Tanh", registry.NOT_YET)
    net = core.Net("nograd")
    loss = net.AveragedLoss(net.Tanh("x", "y"), "loss")
    with pytest.raises(autograd.GradientError, match=r"Exception when creating gradient for \[Tanh\]"):
        net.AddGradientOperators([loss])


def test_model_helper_gradients_and_param_to_grad():
    m = model_helper.ModelHelper(name="mh_grad")
    h = brew.fc(m, "data", "h", 3, 4)
    brew.relu(m, h, h)
    out = brew.fc(m, h, "out", 4, 2)
    _, loss = m.net.SoftmaxWithLoss([out, "label"], ["p", "loss"])
    m.AddGradientOperators([loss])
    assert {str(k): str(v) for k, v in m.param_to_grad.items()} == {
        "h_w": "h_w_grad", "h_b": "h_b_grad", "out_w": "out_w_grad", "out_b": "out_b_grad"}
    with pytest.raises(RuntimeError, match="twice"):
        m.AddGradientOperators([loss])


def test_mlp_parameter_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    feeds = {"data": rng.standard_normal((5, 3)), "w1": rng.standard_normal((4, 3)) * 0.5,
             "b1": rng.standard_normal(4) * 0.1, "w2": rng.standard_normal((3, 4)) * 0.5,
             "b2": rng.standard_normal(3) * 0.1, "label": np.array([0, 2, 1, 1, 0], np.int32)}

    def build():
        n = core.Net("mlp")
        h = n.FC(["data", "w1", "b1"], "h")
        h = n.Tanh(h, "h_act")
        out = n.FC([h, "w2", "b2"], "out")
        _, loss = n.SoftmaxWithLoss([out, "label"], ["p", "loss"])
        return n, loss

    check_net_gradient(build, feeds, ["w1", "b1", "w2", "b2", "data"])


def test_in_place_op_whose_gradient_reads_its_input_is_refused():
    net = core.Net("inplace_input")
    x = net.Flatten("x", "x")  # in place; Flatten's gradient needs the input's original shape
    loss = net.AveragedLoss(x, "loss")
    with pytest.raises(autograd.GradientError, match=r"\[Flatten\] \(op #0\): it ran in place on 'x'"):
        net.AddGradientOperators([loss])
