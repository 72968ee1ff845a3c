"""Workspace API: blobs, workspaces, running ops/nets/plans, inference, flags."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, utils, workspace
from nbcaffe.proto import caffe2_pb2


def test_feed_copies_and_fetch_copies():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert workspace.FeedBlob("x", x) is True
    x[0, 0] = 100  # the blob holds a copy
    got = workspace.FetchBlob("x")
    assert got[0, 0] == 0 and got.dtype == np.float32 and got.shape == (2, 3)
    got[0, 1] = 50  # and fetch returns a copy
    assert workspace.FetchBlob("x")[0, 1] == 1


def test_feed_scalars_strings_and_tensor_protos():
    workspace.FeedBlob("s", 3.5)
    assert workspace.FetchBlob("s").shape == () and float(workspace.FetchBlob("s")) == 3.5
    workspace.FeedBlob("txt", "hello")
    assert workspace.FetchBlob("txt") == b"hello"
    workspace.FeedBlob("strs", np.array(["a", "bc"]))
    assert workspace.FetchBlob("strs").tolist() == [b"a", b"bc"]
    proto = utils.NumpyArrayToCaffe2Tensor(np.array([[1, 2]], np.int32))
    workspace.FeedBlob("t", proto)
    np.testing.assert_array_equal(workspace.FetchBlob("t"), [[1, 2]])


def test_has_blobs_create_and_fetch_errors():
    workspace.FeedBlob("a", np.zeros(2, np.float32))
    workspace.CreateBlob("empty")
    assert workspace.HasBlob("a") and workspace.HasBlob("empty") and not workspace.HasBlob("zzz")
    assert workspace.Blobs() == ["a", "empty"]
    with pytest.raises(errors.BlobNotFoundError, match="Can't find blob: 'b'"):
        workspace.FetchBlob("b")
    with pytest.raises(errors.BlobNotFoundError, match="holds no value"):
        workspace.FetchBlob("empty")
    with pytest.raises(RuntimeError, match="Did you mean: a"):  # also a RuntimeError, as in Caffe2
        workspace.FetchBlob("A")
    a, = workspace.FetchBlobs(["a"])
    assert a.shape == (2,)


def test_fetch_hint_for_name_scoped_blob():
    workspace.FeedBlob("gpu_0/data", np.zeros(1, np.float32))
    with pytest.raises(errors.BlobNotFoundError, match="gpu_0/data"):
        workspace.FetchBlob("data")


def test_blobs_mapping_view():
    workspace.blobs["x"] = np.ones(3, np.float32)
    assert "x" in workspace.blobs and list(workspace.blobs) == ["x"] and len(workspace.blobs) == 1
    np.testing.assert_array_equal(workspace.blobs["x"], np.ones(3))


def test_switch_reset_and_multiple_workspaces():
    workspace.FeedBlob("x", np.ones(1))
    assert workspace.CurrentWorkspace() == "default"
    with pytest.raises(errors.NbcaffeError, match="create_if_missing"):
        workspace.SwitchWorkspace("other")
    workspace.SwitchWorkspace("other", True)
    assert workspace.CurrentWorkspace() == "other" and not workspace.HasBlob("x")
    workspace.FeedBlob("y", np.ones(1))
    assert set(workspace.Workspaces()) >= {"default", "other"}
    workspace.SwitchWorkspace("default")
    assert workspace.HasBlob("x") and not workspace.HasBlob("y")
    workspace.ResetWorkspace()  # only the current one
    assert workspace.Blobs() == []
    workspace.SwitchWorkspace("other")
    assert workspace.HasBlob("y")
    with workspace.WorkspaceGuard("third"):
        assert workspace.CurrentWorkspace() == "third"
    assert workspace.CurrentWorkspace() == "other"


def test_reset_workspace_sets_root_folder(tmp_path):
    workspace.ResetWorkspace(str(tmp_path / "root"))
    assert workspace.RootFolder() == str(tmp_path / "root") and (tmp_path / "root").is_dir()


def test_workspace_object_api():
    ws = workspace.Workspace("obj")
    blob = ws.create_blob("x")
    blob.feed(np.full(3, 2.0, np.float32))
    net = core.Net("objnet")
    net.Scale("x", "y", scale=3.0)
    ws.create_net(net)
    ws.run_net("objnet")
    np.testing.assert_allclose(ws.fetch_blob("y"), 6.0)
    assert ws.has_blob("y") and not workspace.HasBlob("y")  # separate from the global workspace
    ws.run(core.CreateOperator("Scale", ["y"], ["z"], scale=0.5))
    np.testing.assert_allclose(ws.fetch_blob("z"), 3.0)
    assert blob.is_tensor() and "y" in ws.blob_names()


def test_run_operator_once_and_operators_once():
    workspace.FeedBlob("x", np.array([-1.0, 2.0], np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["y"]))
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [0.0, 2.0])
    workspace.RunOperatorsOnce([core.CreateOperator("Scale", ["y"], ["z"], scale=2.0),
                                core.CreateOperator("Negative", ["z"], ["w"])])
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [-0.0, -4.0])
    workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["x"]).SerializeToString())  # bytes accepted
    np.testing.assert_array_equal(workspace.FetchBlob("x"), [0.0, 2.0])


def test_create_net_requires_existing_inputs_and_names_blob_and_op():
    net = core.Net("needs_data")
    net.Relu("data", "y")
    with pytest.raises(errors.BlobNotFoundError) as info:
        workspace.CreateNet(net)
    message = str(info.value)
    assert "non-existing input blob: 'data'" in message and "Op #0 Relu" in message and "needs_data" in message
    assert "test_workspace.py" in message  # where the op was built
    workspace.CreateNet(net, input_blobs=["data"])  # declaring it is enough, as in Caffe2
    with pytest.raises(errors.BlobNotFoundError, match="has not been written yet"):
        workspace.RunNet("needs_data")


def test_create_net_refuses_overwrite_unless_asked():
    workspace.FeedBlob("x", np.ones(2, np.float32))
    net = core.Net("once")
    net.Relu("x", "y")
    workspace.CreateNet(net)
    with pytest.raises(errors.NbcaffeError, match="respectfully refuse"):
        workspace.CreateNet(net)
    workspace.CreateNet(net, overwrite=True)
    assert workspace.Nets() == ["once"]


def test_run_net_by_name_or_net_and_num_iter():
    workspace.FeedBlob("count", np.zeros(1, np.float32))
    workspace.FeedBlob("one", np.ones(1, np.float32))
    net = core.Net("counter")
    net.Add(["count", "one"], "count")
    workspace.CreateNet(net)
    workspace.RunNet("counter", 5)
    workspace.RunNet(net, num_iter=3)
    assert workspace.FetchBlob("count")[0] == 8
    with pytest.raises(errors.NbcaffeError, match="Did you mean: counter"):
        workspace.RunNet("countr")
    with pytest.raises(TypeError):
        workspace.RunNet(net.Proto())


def test_created_net_is_a_snapshot_of_the_builder():
    workspace.FeedBlob("x", np.ones(2, np.float32))
    net = core.Net("snap")
    net.Scale("x", "y", scale=2.0)
    workspace.CreateNet(net)
    net.Scale("y", "z", scale=2.0)  # added after CreateNet: not part of the created net
    workspace.RunNet("snap")
    assert not workspace.HasBlob("z")


def test_run_net_allow_fail_returns_false():
    workspace.FeedBlob("x", np.ones((2, 3), np.float32))
    workspace.FeedBlob("w", np.ones((4, 5), np.float32))
    workspace.FeedBlob("b", np.ones(4, np.float32))
    net = core.Net("bad_fc")
    net.FC(["x", "w", "b"], "y")
    workspace.CreateNet(net)
    assert workspace.RunNet("bad_fc", allow_fail=True) is False
    with pytest.raises(errors.ShapeError):
        workspace.RunNet("bad_fc")


def test_new_input_shape_between_runs_reallocates_downstream():
    net = core.Net("reshaping")
    net.Relu("x", "y")
    net.Scale("y", "z", scale=2.0)
    workspace.FeedBlob("x", -np.ones((2, 2), np.float32))
    workspace.CreateNet(net)
    workspace.RunNet("reshaping")
    assert workspace.FetchBlob("z").shape == (2, 2)
    x = np.arange(6, dtype=np.float32).reshape(3, 2) - 2
    workspace.FeedBlob("x", x)
    workspace.RunNet("reshaping")
    np.testing.assert_array_equal(workspace.FetchBlob("z"), 2 * np.maximum(x, 0))
    workspace.FeedBlob("x", x + 10)  # same shape, new values
    workspace.RunNet("reshaping")
    np.testing.assert_array_equal(workspace.FetchBlob("z"), 2 * (x + 10))


def test_run_plan_with_steps_substeps_and_should_stop():
    init = core.Net("plan_init")
    init.ConstantFill([], "counter", shape=[1], value=0.0)
    init.ConstantFill([], "one", shape=[1], value=1.0)
    init.ConstantFill([], "limit", shape=[1], value=5.0)
    init.ConstantFill([], "stop", shape=[1], value=False, dtype=core.DataType.BOOL)  # must exist before the step
    body = core.Net("plan_body")
    body.Add(["counter", "one"], "counter")
    stop = core.Net("plan_stop")
    stop.Sub(["counter", "limit"], "diff")
    stop.Relu("diff", "over")
    stop.Cast("over", "stop", to=core.DataType.BOOL)
    plan = core.Plan("p")
    plan.AddStep(core.ExecutionStep("init", init))
    plan.AddStep(core.ExecutionStep("loop", [body], num_iter=4))
    assert workspace.RunPlan(plan)
    assert workspace.FetchBlob("counter")[0] == 4
    # substeps, looping until should_stop_blob fires (counter > 5)
    until = core.execution_step("until", [core.execution_step("b", [body]), core.execution_step("s", [stop])],
                                should_stop_blob="stop")
    plan2 = core.Plan("p2")
    plan2.AddStep(until)
    workspace.RunPlan(plan2)
    assert workspace.FetchBlob("counter")[0] == 6
    # a bare ExecutionStep proto referencing created nets also runs
    workspace.CreateNet(body)
    workspace.RunPlan(core.ExecutionStep("bare", [body], num_iter=2).Proto())
    assert workspace.FetchBlob("counter")[0] == 8


def test_infer_shapes_and_types():
    workspace.FeedBlob("x", np.zeros((4, 5), np.float32))
    net = core.Net("infer")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    net.Cast("z", "zi", to=core.DataType.INT32)
    net.Reshape(["zi", "new_shape"], ["r", "old"])  # shape from values: unknown statically
    shapes, types = workspace.InferShapesAndTypes([net], blob_dimensions={"w": [3, 5], "b": [3]})
    assert shapes["y"] == [4, 3] and shapes["z"] == [4, 3] and shapes["zi"] == [4, 3]
    assert types["y"] == caffe2_pb2.TensorProto.FLOAT and types["zi"] == caffe2_pb2.TensorProto.INT32
    assert "r" not in shapes
    with pytest.raises(errors.ShapeError, match="K="):
        workspace.InferShapesAndTypes([net], blob_dimensions={"w": [3, 6], "b": [3]})


def test_registered_operators_and_global_init():
    ops = workspace.RegisteredOperators()
    assert {"FC", "Relu", "SoftmaxWithLoss", "GivenTensorFill"} <= set(ops)
    assert all(core.IsOperator(o) for o in ops) and not core.IsOperator("NoSuchOp")
    assert workspace.GlobalInit(["caffe2", "--caffe2_log_level=2", "--caffe2_print_blob_sizes_at_exit=0"])
    assert workspace.FLAGS["caffe2_log_level"] == "2"
    import logging

    assert logging.getLogger("nbcaffe").level == logging.ERROR
    workspace.GlobalInit(["caffe2", "--caffe2_log_level=0"])


def test_gpu_queries_do_not_fail_without_a_gpu():
    n = workspace.NumCudaDevices()
    assert n >= 0 and workspace.has_gpu_support == (n > 0)
