"""nbcaffe.debugging: net_summary's table and totals, and the net-wide NaN/Inf hunt."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nbcaffe import brew, core, debugging, errors, model_helper, workspace
from nbcaffe import net as _net


@pytest.fixture(autouse=True)
def fresh_workspace():
    with workspace.temp_workspace("_test_debugging_"):
        yield


def mlp():
    model = model_helper.ModelHelper("summary_mlp")
    fc1 = brew.fc(model, "data", "fc1", 6, 4)
    relu = brew.relu(model, fc1, "relu1")
    fc2 = brew.fc(model, relu, "fc2", 4, 3)
    loss = model.net.AveragedLoss(model.net.Sigmoid(fc2, "sig"), "loss")
    model.AddGradientOperators([loss])
    return model


def test_net_summary_shapes_params_and_flops():
    out = io.StringIO()
    summary = debugging.net_summary(mlp(), input_shapes={"data": (5, 6)}, file=out)
    text = out.getvalue()
    assert text.strip() == str(summary)
    assert summary.params == {"fc1_w": (4, 6), "fc1_b": (4,), "fc2_w": (3, 4), "fc2_b": (3,)}
    assert summary.param_count == 24 + 4 + 12 + 3
    rows = {row["index"]: row for row in summary.ops}
    assert rows[0]["type"] == "FC" and rows[0]["outputs"] == [("fc1", (5, 4), "float32")]
    assert rows[0]["flops"] == 2 * 5 * 4 * 6
    assert rows[2]["outputs"] == [("fc2", (5, 3), "float32")] and rows[2]["flops"] == 2 * 5 * 3 * 4
    grad = [row for row in summary.ops if row["type"] == "FCGradient"][0]
    assert [b for b, _, _ in grad["outputs"]] == ["fc2_w_grad", "fc2_b_grad", "relu1_grad"]
    assert summary.total_flops == sum(row["flops"] for row in summary.ops)
    assert text.splitlines()[0] == (f"Net 'summary_mlp': {len(summary.ops)} ops, 43 parameters,"
                                    f" {summary.total_flops / 1e3:.2f} kFLOP per run (estimate)")
    assert "Inputs: data (5, 6) float32" in text
    assert "fc1_w  (4, 6)" in text and "relu1  " in text
    assert repr(summary).startswith("NetSummary('summary_mlp': ")


def test_net_summary_unknown_shapes_show_question_marks():
    net = core.Net("bare")
    net.Relu("x", "y")
    summary = debugging.net_summary(net, file=None)
    assert summary.ops[0]["outputs"] == [("y", None, "?")] and summary.ops[0]["flops"] is None
    assert str(summary).splitlines()[2].split() == ["0", "Relu", "y", "?", "?", "?"]
    fed = debugging.net_summary(net.Proto(), input_shapes={"x": (2, 2)}, file=None)
    assert fed.ops[0]["outputs"] == [("y", (2, 2), "float32")] and fed.param_count == 0


def _net_with_log():
    net = core.Net("hunt")
    a = net.Sub(["x", "x"], "zeros")
    b = net.Log(a, "logs")       # log(0) = -inf: the culprit
    net.Scale(b, "scaled", scale=2.0)
    return net


def test_check_finite_names_the_op_that_made_the_first_inf():
    net = _net_with_log()
    workspace.FeedBlob("x", np.ones(3, np.float32))
    workspace.CreateNet(net)
    workspace.RunNet(net)  # without the check the -inf just flows on
    assert np.isinf(workspace.FetchBlob("scaled")).all()
    with pytest.raises(errors.NonFiniteError) as info:
        debugging.run_net_checked(net)
    text = str(info.value)
    assert text.startswith("Op #1 Log in net 'hunt' failed: first NaN/Inf of the run: output 'logs' (3,)")
    assert "every input of this op was finite, so this op produced it" in text
    assert f"created at: {__file__}" in text
    assert _net.NetInstance.run is not debugging._checked_run  # switched off again


def test_check_finite_blames_outside_inputs_and_covers_run_net_once():
    net = core.Net("outside")
    net.Scale("x", "y", scale=3.0)
    workspace.FeedBlob("x", np.array([1.0, np.nan], np.float32))
    with debugging.check_finite(), debugging.check_finite():  # nesting is harmless
        with pytest.raises(errors.NonFiniteError, match="input\\(s\\) 'x' already held NaN/Inf"):
            workspace.RunNetOnce(net)
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32))
    with debugging.check_finite():
        workspace.RunNetOnce(net)  # finite: runs through
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [3.0, 6.0])


def test_check_finite_keeps_other_failures_as_they_were():
    net = core.Net("other_failure")
    net.Relu("missing_later", "y")
    workspace.CreateBlob("missing_later")
    workspace.CreateNet(net)
    with debugging.check_finite(), pytest.raises(errors.BlobNotFoundError, match="Op #0 Relu"):
        workspace.RunNet(net)
