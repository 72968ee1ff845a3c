"""NanCheck, Assert, Print and Summarize: what they report, against NumPy written here."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption

DEVICES = [pytest.param(DeviceOption(CPU), id="cpu"),
           pytest.param(DeviceOption(CUDA, 0), id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(autouse=True)
def fresh_workspace(tmp_path):
    with workspace.temp_workspace("_test_debug_ops_"):
        workspace.ResetWorkspace(str(tmp_path))
        yield


@pytest.mark.parametrize("device", DEVICES)
def test_nan_check_names_blob_counts_and_first_index(device):
    x = np.ones((2, 3, 4), np.float32)
    x[1, 2, 3] = np.nan
    x[1, 0, 1] = np.inf
    x[0, 1, 2] = -np.inf
    workspace.FeedBlob("x", x, device)
    workspace.FeedBlob("context", np.arange(3, dtype=np.float32), device)
    op = core.CreateOperator("NanCheck", ["x", "context"], ["y"], device_option=device)
    with pytest.raises(errors.NonFiniteError) as info:
        workspace.RunOperatorOnce(op)
    text = str(info.value)
    assert "'x' (2, 3, 4) float32 holds 1 NaN and 2 Inf of 24 values" in text
    assert "the first, at index (0, 1, 2), is -inf" in text  # row-major first: flat 6
    assert "'context' (3,) float32 finite, min 0 max 2" in text
    assert "Op #0 NanCheck" in text and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("device", DEVICES)
def test_nan_check_passes_finite_tensors_through(device):
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    workspace.FeedBlob("x", x, device)
    workspace.RunOperatorOnce(core.CreateOperator("NanCheck", ["x"], ["y"], device_option=device))
    np.testing.assert_array_equal(workspace.FetchBlob("y"), x)
    workspace.RunOperatorOnce(core.CreateOperator("NanCheck", ["x"], ["x"], device_option=device))
    np.testing.assert_array_equal(workspace.FetchBlob("x"), x)


def test_nan_check_rejects_integers_and_checks_the_backward_pass():
    workspace.FeedBlob("i", np.arange(3, dtype=np.int32))
    with pytest.raises(errors.ShapeError, match="floating point"):
        workspace.RunOperatorOnce(core.CreateOperator("NanCheck", ["i"], ["j"]))
    net = core.Net("nan_backward")
    y = net.NanCheck("x", "y")
    loss = net.AveragedLoss(net.Log(y, "logy"), "loss")
    net.AddGradientOperators([loss])
    assert [op.type for op in net.Proto().op].count("NanCheck") == 2
    workspace.FeedBlob("x", np.array([1.0, 0.0], np.float32))  # log(0) = -inf, its gradient 1/0 = inf
    with pytest.raises(errors.NonFiniteError, match="Op #6 NanCheck.*'logy_grad'|Op #6 NanCheck.*'y_grad'"):
        workspace.RunNetOnce(net)


@pytest.mark.parametrize("device", DEVICES)
def test_assert_message_and_first_false_index(device):
    workspace.FeedBlob("c", np.array([[True, True], [True, False]]), device)
    op = core.CreateOperator("Assert", ["c"], [], error_msg="mask must be full", device_option=device)
    with pytest.raises(errors.AssertionFailedError) as info:
        workspace.RunOperatorOnce(op)
    assert "mask must be full: 'c' (2, 2) has 1 false value(s) of 4; the first at index (1, 1)" in str(info.value)
    workspace.FeedBlob("c", np.array([3, -1, 7], np.int64), device)
    workspace.RunOperatorOnce(op)


def test_assert_without_message_and_on_floats():
    workspace.FeedBlob("c", np.zeros(2, np.int32))
    with pytest.raises(errors.AssertionFailedError, match="Assert failed: 'c' .* the first at index \\(0,\\)"):
        workspace.RunOperatorOnce(core.CreateOperator("Assert", ["c"], []))
    workspace.FeedBlob("f", np.ones(2, np.float32))
    with pytest.raises(errors.ShapeError, match="compare first"):
        workspace.RunOperatorOnce(core.CreateOperator("Assert", ["f"], []))


def test_assert_in_a_net():
    net = core.Net("checked")
    ok = net.Cast("x", "x_nonzero", to=core.DataType.BOOL)
    net.Assert(ok, [], error_msg="x must be non-zero")
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32))
    workspace.RunNetOnce(net)
    workspace.FeedBlob("x", np.array([3.0, 0.0], np.float32))
    with pytest.raises(errors.AssertionFailedError, match="Op #1 Assert in net 'checked.*x must be non-zero"):
        workspace.RunNetOnce(net)


def test_print_limit_every_n_and_to_file(capsys, tmp_path):
    workspace.FeedBlob("big", np.arange(1500, dtype=np.int32))
    workspace.RunOperatorOnce(core.CreateOperator("Print", ["big"], []))
    out = capsys.readouterr().out
    assert out.startswith("big of type int32 and shape [1500]: 0,1,2,")
    assert ",999,... (500 more)" in out  # limit 0 = Caffe2's 1000 values
    workspace.RunOperatorOnce(core.CreateOperator("Print", ["big"], [], limit=3))
    assert capsys.readouterr().out == "big of type int32 and shape [1500]: 0,1,2,... (1497 more)\n"
    net = core.Net("printing")
    net.Print("big", [], limit=2, every_n=2, to_file=1)
    workspace.CreateNet(net)
    workspace.RunNet(net, 5)  # runs 1, 3 and 5 print
    lines = (tmp_path / "big.log").read_text().splitlines()
    assert lines == ["big of type int32 and shape [1500]: 0,1,... (1498 more)"] * 3
    assert capsys.readouterr().out == ""


def test_summarize_to_blob_and_file(tmp_path):
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunOperatorOnce(core.CreateOperator("Summarize", ["x"], ["s"], to_file=1))
    expected = [1.0, 6.0, 3.0, np.std(x, ddof=1)]
    np.testing.assert_allclose(workspace.FetchBlob("s"), expected, rtol=1e-6)
    assert (tmp_path / "x.summary").read_text().split() == [f"{v:g}" for v in np.float32(expected)]
