"""Net building: CreateOperator, Argument typing, Net methods, BlobReference, scopes."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, scope, workspace
from nbcaffe.proto import caffe2_pb2


def arg(op, name):
    return next(a for a in op.arg if a.name == name)


def test_create_operator_fields_and_argument_typing():
    op = core.CreateOperator(
        "Foo", ["a", core.BlobReference("b")], "c", name="n", engine="CUDNN", control_input=["z"],
        flag=True, count=3, rate=0.5, mode="x", raw=b"\x00\x01", ints=[1, 2], floats=[1.0, 2.5],
        strs=["p", "q"], empty=[], arr=np.array([1.5, 2.5], np.float32), iarr=np.array([1, 2]),
        net=caffe2_pb2.NetDef(name="inner"), random_seed=42, skipped=None)
    assert op.type == "Foo" and list(op.input) == ["a", "b"] and list(op.output) == ["c"]
    assert op.name == "n" and op.engine == "CUDNN" and list(op.control_input) == ["z"]
    assert arg(op, "flag").i == 1 and arg(op, "count").i == 3 and arg(op, "rate").f == 0.5
    assert arg(op, "mode").s == b"x" and arg(op, "raw").s == b"\x00\x01"
    assert list(arg(op, "ints").ints) == [1, 2] and list(arg(op, "floats").floats) == [1.0, 2.5]
    assert list(arg(op, "strs").strings) == [b"p", b"q"]
    assert len(arg(op, "empty").floats) == 0 and not arg(op, "empty").ints
    assert list(arg(op, "arr").floats) == [1.5, 2.5] and list(arg(op, "iarr").ints) == [1, 2]
    assert arg(op, "net").n.name == "inner"
    assert op.device_option.random_seed == 42 and not any(a.name == "skipped" for a in op.arg)
    assert op.HasField("name")  # Caffe2 always set the name, so `name: ""` prints


def test_mixed_list_argument_raises():
    with pytest.raises(ValueError, match="mixes"):
        core.CreateOperator("Foo", [], [], bad=[1, 2.5])
    with pytest.raises(ValueError, match="Unknown argument type"):
        core.CreateOperator("Foo", [], [], bad=object())


def test_device_scope_applies_and_nests():
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 1)
    assert core.CreateOperator("Relu", "x", "y").HasField("device_option") is False
    with core.DeviceScope(gpu):
        op = core.CreateOperator("Relu", "x", "y")
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
            inner = core.CreateOperator("Relu", "x", "y")
        explicit = core.CreateOperator("Relu", "x", "y", device_option=core.DeviceOption(caffe2_pb2.CPU))
    assert op.device_option.device_type == caffe2_pb2.CUDA and op.device_option.device_id == 1
    assert inner.device_option.device_type == caffe2_pb2.CPU
    assert explicit.device_option.device_type == caffe2_pb2.CPU
    assert scope.CurrentDeviceScope() is None
    assert core.DeviceOption(caffe2_pb2.CUDA, cuda_gpu_id=2).device_id == 2


def test_name_scope_prefixes_string_names_only():
    net = core.Net("scoped")
    with core.NameScope("gpu_0"):
        with core.NameScope("block"):
            y = net.Relu("x", "y")
            z = net.Relu(core.BlobReference("raw"), "z")
            assert scope.CurrentNameScope() == "gpu_0/block/"
        w = net.Relu(y, "w")
    assert str(y) == "gpu_0/block/y" and str(w) == "gpu_0/w"
    assert list(net.Proto().op[0].input) == ["gpu_0/block/x"] and list(net.Proto().op[1].input) == ["raw"]
    assert str(z) == "gpu_0/block/z" and scope.CurrentNameScope() == ""
    with core.NameScope("a"):
        with core.NameScope("b", reset=True):
            assert scope.CurrentNameScope() == "b/"


def test_net_auto_names_external_inputs_and_returns():
    net = core.Net("auto")
    a = net.Relu("x")
    b = net.Relu("x")
    assert (str(a), str(b)) == ("auto/Relu", "auto/Relu_2")
    sm, loss = net.SoftmaxWithLoss([b, "label"], 2)
    assert (str(sm), str(loss)) == ("auto/SoftmaxWithLoss:0", "auto/SoftmaxWithLoss:1")
    assert list(net.Proto().external_input) == ["x", "label"]
    assert net.Print(loss, []) is None
    assert net.BlobIsDefined("auto/Relu") and net.UsesBlob("label") and not net.BlobIsDefined("nope")
    assert str(net.NextBlob("fresh")) == "fresh" and str(net.NextBlob("auto/Relu")) == "auto/Relu_3"


def test_net_names_are_unique_in_a_process():
    assert core.Net("same").Name() == "same"
    assert core.Net("same").Name() == "same_1"
    assert core.Net("same").Name() == "same_2"
    assert str(core.Net("named")) == "named"


def test_unknown_op_method_suggests_close_names():
    net = core.Net("typo")
    with pytest.raises(AttributeError, match="Did you mean: Relu"):
        net.Rleu("x", "y")
    with pytest.raises(AttributeError, match="Did you mean: Sigmoid"):
        core.BlobReference("x", net).Sigmoidd()
    assert "FC" in dir(net)


def test_op_methods_carry_the_op_doc():
    net = core.Net("doc")
    assert "X · Wᵀ + b" in net.FC.__doc__ and net.FC.__name__ == "FC"


def test_blob_reference_methods_and_equality():
    net = core.Net("blobref")
    x = net.AddExternalInput("x")
    y = x.Relu([], "y")
    z = y.Add(["x"], "z")
    assert [op.type for op in net.Proto().op] == ["Relu", "Add"]
    assert list(net.Proto().op[1].input) == ["y", "x"] and str(z) == "z"
    assert x == "x" and x == core.BlobReference("x") and x != "y" and hash(x) == hash("x")
    assert str(x + "_grad") == "x_grad" and str("pre_" + x) == "pre_x" and repr(x) == 'BlobReference("x")'
    ref = core.BlobReference("gpu_0/conv1_w")
    assert ref.GetNameScope() == "gpu_0/" and ref.GetUnscopedName() == "conv1_w"
    with pytest.raises(AttributeError, match="net source"):
        core.BlobReference("loose").Relu()
    with pytest.raises(errors.SchemaError, match="already contains an input"):
        net.AddExternalInput("x")


def test_proto_text_and_wrapping_an_existing_netdef():
    net = core.Net("text")
    net.FC(["x", "w", "b"], "y", axis=1)
    text = str(net.Proto())
    assert 'name: "text"' in text and 'type: "FC"' in text and 'name: "axis"' in text
    copy = core.Net(net.Proto())
    assert copy.Name() == "text_1" and [op.type for op in copy.Proto().op] == ["FC"]
    assert copy.BlobIsDefined("y") and copy.BlobIsDefined("x")


def test_clone_with_remap_and_mask():
    net = core.Net("orig")
    net.Relu("x", "h")
    net.Scale("h", "y", scale=2.0)
    net.AddExternalOutput("y")
    clone = net.Clone("copy", blob_remap={"x": "x2", "y": "y2"})
    proto = clone.Proto()
    assert proto.name == "copy" and list(proto.op[0].input) == ["x2"] and list(proto.op[1].output) == ["y2"]
    assert list(proto.external_input) == ["x2"] and list(proto.external_output) == ["y2"]
    assert len(net.Clone("first", op_id_mask=[0]).Proto().op) == 1
    workspace.FeedBlob("x2", np.array([-1.0, 3.0], np.float32))
    workspace.RunNetOnce(clone)
    np.testing.assert_array_equal(workspace.FetchBlob("y2"), [0.0, 6.0])


def test_const_emits_typed_fills_and_runs():
    net = core.Net("const")
    f = net.Const(np.array([[1.5, 2.5]]))
    i = net.Const(np.array([1, 2], np.int32))
    l = net.Const(np.array([2 ** 40], np.int64))
    b = net.Const(True)
    s = net.Const(np.array(["a"]), blob_out="s")
    types = [op.type for op in net.Proto().op]
    assert types == ["GivenTensorFill", "GivenTensorIntFill", "GivenTensorInt64Fill", "ConstantFill",
                     "GivenTensorStringFill"]
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob(f).dtype == np.float32 and workspace.FetchBlob(f).shape == (1, 2)
    np.testing.assert_array_equal(workspace.FetchBlob(i), [1, 2])
    assert workspace.FetchBlob(l)[0] == 2 ** 40 and workspace.FetchBlob(b).dtype == np.bool_
    assert workspace.FetchBlob(s).tolist() == [b"a"]


def test_run_all_on_gpu_sets_the_net_device_option():
    net = core.Net("gpu_all")
    net.Relu("x", "y")
    net.RunAllOnGPU(gpu_id=0, use_cudnn=True)
    assert net.Proto().device_option.device_type == caffe2_pb2.CUDA and net.Proto().op[0].engine == "CUDNN"


def test_append_net_and_set_rand_seed():
    a = core.Net("a")
    a.Relu("x", "y")
    b = core.Net("b")
    b.Scale("y", "z", scale=2.0)
    b.AddExternalOutput("z")
    a.AppendNet(b)
    assert [op.type for op in a.Proto().op] == ["Relu", "Scale"] and list(a.Proto().external_output) == ["z"]
    a.set_rand_seed(10)
    assert [op.device_option.random_seed for op in a.Proto().op] == [10, 11]


def test_plan_builders_produce_plan_defs():
    init = core.Net("pi")
    init.ConstantFill([], "v", shape=[1], value=1.0)
    step = core.ExecutionStep("s", [init], num_iter=3)
    step.SetShouldStopBlob("stop")
    plan = core.Plan(step)
    proto = plan.Proto()
    assert proto.name == "s" and [n.name for n in proto.network] == ["pi"]
    assert proto.execution_step[0].num_iter == 3 and proto.execution_step[0].should_stop_blob == "stop"
    outer = core.ExecutionStep("outer")
    outer.AddSubstep(core.ExecutionStep("inner", [init]))
    with pytest.raises(errors.SchemaError):
        outer.AddNet(init)
