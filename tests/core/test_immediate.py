"""Immediate mode: ops run as they are created, in a private workspace."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nbcaffe import brew, core, errors, model_helper, workspace


@pytest.fixture(autouse=True)
def immediate_off_afterwards():
    yield
    workspace.StopImmediate()


def test_ops_run_as_they_are_created_in_a_private_workspace(capsys):
    assert not workspace.IsImmediate()
    workspace.StartImmediate()
    assert workspace.IsImmediate() and "Immediate mode is on" in capsys.readouterr().out
    before = set(workspace.Blobs())
    workspace.FeedImmediate("x", np.array([-1.0, 2.0], np.float32))
    net = core.Net("immediate_net")
    y = net.Relu("x", "y")
    assert workspace.FetchImmediate(y).tolist() == [0.0, 2.0]
    net.Scale(y, "z", scale=3.0)
    assert workspace.FetchImmediate("z").tolist() == [0.0, 6.0]
    assert {"x", "y", "z"} <= set(workspace.ImmediateBlobs())
    assert set(workspace.Blobs()) == before  # the current workspace is untouched
    assert [op.type for op in net.Proto().op] == ["Relu", "Scale"]  # the net is built as usual
    workspace.StopImmediate()
    assert not workspace.IsImmediate()
    workspace.FeedBlob("x", np.array([4.0], np.float32))
    workspace.RunNetOnce(net)  # and runs normally afterwards
    assert workspace.FetchBlob("z").tolist() == [12.0]


def test_model_helpers_run_their_init_ops_too():
    workspace.StartImmediate(i_know=True)
    model = model_helper.ModelHelper("immediate_model")
    workspace.FeedImmediate("data", np.ones((2, 3), np.float32))
    brew.fc(model, "data", "fc", 3, 4)  # the init ops fill fc_w/fc_b, then FC runs
    assert workspace.FetchImmediate("fc_w").shape == (4, 3)
    assert workspace.FetchImmediate("fc").shape == (2, 4)


def test_restart_stop_and_errors_where_the_op_is_created(capsys):
    workspace.StartImmediate(i_know=True)
    assert capsys.readouterr().out == ""
    workspace.FeedImmediate("a", np.ones(1, np.float32))
    assert workspace.CurrentWorkspace() != "_CAFFE2_IMMEDIATE"
    workspace.StartImmediate(i_know=True)  # a restart starts from an empty workspace
    assert "a" not in workspace.ImmediateBlobs()
    net = core.Net("broken_immediately")
    with pytest.raises(errors.BlobNotFoundError, match="Op #0 Relu failed: input 0 'missing'"):
        net.Relu("missing", "out")
    workspace.StopImmediate()
    workspace.StopImmediate()  # twice is fine
    with pytest.raises(errors.NbcaffeError, match="immediate mode is off"):
        workspace.FetchImmediate("a")


def test_private_folder_is_removed():
    from nbcaffe import immediate

    workspace.StartImmediate(i_know=True)
    folder = immediate._state["root"]
    assert os.path.isdir(folder)
    workspace.StopImmediate()
    assert not os.path.exists(folder)
