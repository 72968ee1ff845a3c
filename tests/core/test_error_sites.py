"""Failures name the Python line that created the failing operator ("created at: file:line")."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nbcaffe import brew, core, errors, model_helper, workspace


def _line():
    """The caller's current line number (call it on the line that creates the op)."""
    return sys._getframe(1).f_lineno


def _site(line, func):
    return f"created at: {__file__}:{line} in {func}"


@pytest.fixture(autouse=True)
def fresh_workspace():
    with workspace.temp_workspace("_test_error_sites_"):
        workspace.FeedBlob("x", np.ones((2, 3), np.float32))
        workspace.FeedBlob("w", np.ones((4, 5), np.float32))  # K = 5 does not fit x's 3 columns
        workspace.FeedBlob("b", np.ones(4, np.float32))
        yield


def test_run_net_failure_names_type_index_shapes_and_line():
    net = core.Net("sites")
    net.Relu("x", "r")
    net.FC(["r", "w", "b"], "y"); line = _line()  # noqa: E702
    workspace.CreateNet(net)
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunNet(net)
    text = str(info.value)
    assert text.startswith("Op #1 FC in net 'sites' failed:")
    assert "inputs: r (2, 3) float32 on CPU; w (4, 5) float32 on CPU; b (4,) float32 on CPU" in text
    assert text.endswith(_site(line, "test_run_net_failure_names_type_index_shapes_and_line"))


def _build_with_brew(model):
    return brew.fc(model, "x", "fc", 5, 4)  # the user's line, not brew's


def test_helpers_report_the_users_line_not_nbcaffes():
    model = model_helper.ModelHelper("brewed")
    _build_with_brew(model)
    line = _build_with_brew.__code__.co_firstlineno + 1  # its brew.fc line
    workspace.RunNetOnce(model.param_init_net)
    with pytest.raises(errors.ShapeError, match="Op #0 FC in net 'brewed'") as info:
        workspace.RunNetOnce(model.net)
    assert _site(line, "_build_with_brew") in str(info.value)


def test_create_net_failure_and_net_proto_and_plans_keep_sites():
    net = core.Net("bad_arg")
    net.Relu("x", "r", no_such_argument=1); line = _line()  # noqa: E702
    with pytest.raises(errors.ArgumentError) as info:
        workspace.CreateNet(net)
    assert _site(line, "test_create_net_failure_and_net_proto_and_plans_keep_sites") in str(info.value)

    net = core.Net("from_proto")
    net.FC(["x", "w", "b"], "y"); line = _line()  # noqa: E702
    expected = _site(line, "test_create_net_failure_and_net_proto_and_plans_keep_sites")
    workspace.CreateNet(net.Proto())  # a NetDef: the sites come from the live core.Net of that name
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunNet(net.Name())
    assert expected in str(info.value)
    plan = core.Plan("plan")
    plan.AddStep(core.execution_step("step", net))
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunPlan(plan)
    assert expected in str(info.value)


def test_append_net_clone_and_gradient_ops_keep_sites():
    part = core.Net("part")
    part.FC(["x", "w", "b"], "y"); line = _line()  # noqa: E702
    whole = core.Net("whole")
    whole.Relu("x", "x2")
    whole.AppendNet(part)
    clone = whole.Clone("clone")
    for net in (whole, clone):
        with pytest.raises(errors.ShapeError, match="Op #1 FC") as info:
            workspace.RunNetOnce(net)
        assert _site(line, "test_append_net_clone_and_gradient_ops_keep_sites") in str(info.value)

    grads = core.Net("grads")
    y = grads.Sigmoid("x", "y")
    loss = grads.AveragedLoss(y, "loss")
    grads.AddGradientOperators([loss]); line = _line()  # noqa: E702
    grads.Proto().op[-1].input[0] = "b"  # break SigmoidGradient: its Y no longer matches dY's shape
    with pytest.raises(errors.NbcaffeError, match="SigmoidGradient") as info:
        workspace.RunNetOnce(grads)
    assert _site(line, "test_append_net_clone_and_gradient_ops_keep_sites") in str(info.value)


def test_bare_operator_with_caffe2_debug(monkeypatch):
    op = core.CreateOperator("FC", ["x", "w", "b"], ["y"])
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunOperatorOnce(op)
    assert "created at" not in str(info.value)  # no net, no site: the traceback has the call line
    monkeypatch.setenv("CAFFE2_DEBUG", "1")  # Caffe2's switch: ops carry their creation traceback
    op = core.CreateOperator("FC", ["x", "w", "b"], ["y"]); line = _line()  # noqa: E702
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunOperatorOnce(op)
    assert f'created at (debug_info): File "{__file__}", line {line}, in test_bare_operator_with_caffe2_debug' \
        in str(info.value)
