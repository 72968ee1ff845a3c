"""Python operators: wrappers, nets, gradients, errors, serialization and the CUDA host-copy path."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, workspace
from nbcaffe.autograd import GradientError
from nbcaffe.devices import CUDA, DeviceOption
from nbcaffe.proto import caffe2_pb2


@pytest.fixture(autouse=True)
def fresh_workspace():
    with workspace.temp_workspace("_test_python_op_"):
        yield


def square(inputs, outputs):
    outputs[0].feed(inputs[0].data ** 2)


def square_grad(inputs, outputs):
    x, _y, dy = inputs
    outputs[0].feed(2 * x.data * dy.data)


def test_wrappers_data_shape_reshape_feed():
    seen = {}

    def f(inputs, outputs):
        x = inputs[0]
        seen["shape"], seen["is_array"] = x.shape, isinstance(x.data, np.ndarray)
        outputs[0].reshape((2, 3))  # a new tensor: float32, like Caffe2
        outputs[0].data[...] = np.arange(6).reshape(2, 3)
        outputs[1].feed([[1, 2]])
        outputs[1].reshape((2,))  # same size: a reshaped view of the fed data
        seen["repr"] = repr(outputs[1])

    net = core.Net("wrappers")
    net.Python(f)(["x"], ["a", "b"])
    workspace.FeedBlob("x", np.ones((4, 1), np.float64))
    workspace.CreateNet(net)
    workspace.RunNet(net, 2)
    assert seen == {"shape": (4, 1), "is_array": True, "repr": "TensorCPU('b', shape=(2,))"}
    a = workspace.FetchBlob("a")
    assert a.dtype == np.float32 and a.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert workspace.FetchBlob("b").tolist() == [1, 2]


def test_writes_through_data_reach_the_blob_in_place():
    def double_in_place(inputs, outputs):
        outputs[0].data[...] *= 2

    net = core.Net("in_place")
    net.Python(double_in_place)(["x"], ["x"])
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32))
    workspace.RunNetOnce(net)
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob("x").tolist() == [4.0, 8.0]


def test_pass_workspace_kwargs_and_create_python_operator():
    calls = []

    def f(inputs, outputs, ws):
        calls.append(ws.name)
        outputs[0].feed(inputs[0].data + ws.fetch_blob("offset"))

    workspace.FeedBlob("offset", np.float32(10))
    workspace.FeedBlob("x", np.array([1, 2], np.float32))
    net = core.Net("ws")
    out = net.Python(f, pass_workspace=True)("x", "y", name="adder", note="any extra argument is kept")
    assert str(out) == "y"
    op = net.Proto().op[0]
    assert op.name == "adder" and {a.name for a in op.arg} == {"token", "note"}
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob("y").tolist() == [11, 12] and calls == ["_test_python_op_"]
    workspace.RunOperatorOnce(core.CreatePythonOperator(square, ["x"], ["sq"]))
    assert workspace.FetchBlob("sq").tolist() == [1, 4]


def test_gradient_through_a_net():
    net = core.Net("grad")
    y = net.Python(square, square_grad)(["x"], ["y"])
    loss = net.AveragedLoss(y, "loss")
    grads = net.AddGradientOperators([loss])
    assert [op.type for op in net.Proto().op][-1] == "PythonGradient"
    x = np.array([1.0, -3.0, 0.5], np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob(grads["x"]), 2 * x / 3, rtol=1e-6)


def test_gradient_index_selection_and_missing_output_gradient():
    def two_out(inputs, outputs):
        outputs[0].feed(inputs[0].data * 3)
        outputs[1].feed(inputs[0].data * 0)

    def two_out_grad(inputs, outputs):
        # [x, w, y0, y1, dy0] -> [dx]: grad_output_indices=[0], grad_input_indices=[0]
        assert len(inputs) == 5 and len(outputs) == 1
        outputs[0].feed(inputs[4].data * 3)

    net = core.Net("indices")
    y0, _ = net.Python(two_out, two_out_grad, grad_output_indices=[0], grad_input_indices=[0])(["x", "w"],
                                                                                            ["y0", "y1"])
    grads = net.AddGradientOperators([net.AveragedLoss(y0, "loss")])
    workspace.FeedBlob("x", np.ones(4, np.float32))
    workspace.FeedBlob("w", np.ones(1, np.float32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob(grads["x"]), np.full(4, 0.75))
    assert "w" not in grads
    bare = core.Net("no_indices")
    z0, _ = bare.Python(two_out, two_out_grad)(["x"], ["z0", "z1"])
    with pytest.raises(GradientError, match="grad_output_indices"):
        bare.AddGradientOperators([bare.AveragedLoss(z0, "loss")])


def test_python_func_type():
    class Cube:
        def __init__(self, f):
            self.f = f

        def forward(self, inputs, outputs):
            outputs[0].feed(inputs[0].data ** 3)

        def backward(self, inputs, outputs):
            outputs[0].feed(3 * inputs[0].data ** 2 * inputs[2].data)

    net = core.Net("func_type")
    y = net.Python(None, python_func_type=Cube)(["x"], ["y"])
    grads = net.AddGradientOperators([net.AveragedLoss(y, "loss")])
    workspace.FeedBlob("x", np.array([2.0], np.float32))
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob("y").tolist() == [8.0] and workspace.FetchBlob(grads["x"]).tolist() == [12.0]


def test_exception_in_function_names_op_function_and_cause():
    def broken(inputs, outputs):
        raise ValueError("negative lengths are not allowed")

    net = core.Net("broken")
    net.Relu("x", "r")
    net.Python(broken)(["r"], ["y"], name="lengths")
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.CreateNet(net)
    with pytest.raises(errors.PythonOperatorError) as info:
        workspace.RunNet(net)
    text = str(info.value)
    assert text.startswith("Op #1 Python (name 'lengths') in net 'broken' failed: its Python function"
                           " test_exception_in_function_names_op_function_and_cause.<locals>.broken (defined at")
    assert "raised ValueError: negative lengths are not allowed" in text
    assert "inputs: r (2,) float32 on CPU" in text and f"created at: {__file__}" in text
    cause = info.value.__cause__
    while cause is not None and not isinstance(cause, ValueError):
        cause = cause.__cause__
    assert isinstance(cause, ValueError)


def test_unwritten_output_and_missing_grad_f():
    net = core.Net("lazy")
    net.Python(lambda inputs, outputs: None)(["x"], ["y"])
    workspace.FeedBlob("x", np.ones(2, np.float32))
    with pytest.raises(errors.OperatorError, match="output 0 'y' was never written by .*feed"):
        workspace.RunNetOnce(net)
    net = core.Net("no_grad")
    y = net.Python(square)(["x"], ["y"])
    net.AddGradientOperators([net.AveragedLoss(y, "loss")])
    with pytest.raises(errors.SchemaError, match="registered without grad_f"):
        workspace.RunNetOnce(net)


def test_serialized_net_needs_the_function_in_this_process():
    net = core.Net("saved")
    net.Python(square)(["x"], ["y"])
    data = net.Proto().SerializeToString()
    workspace.FeedBlob("x", np.array([3.0], np.float32))
    loaded = caffe2_pb2.NetDef.FromString(data)
    workspace.RunNetOnce(loaded)  # same process: the token still names the function
    assert workspace.FetchBlob("y").tolist() == [9.0]
    loaded.op[0].arg[0].s = b"0:from_another_process"
    with pytest.raises(errors.SchemaError, match="names no function registered in this process"):
        workspace.CreateNet(loaded)
    loaded.op[0].ClearField("arg")
    loaded.op[0].arg.add(name="pickled_builder", s=b"...")
    with pytest.raises(errors.ArgumentError, match="does not unpickle"):
        workspace.CreateNet(loaded, overwrite=True)


@pytest.mark.cuda
def test_cuda_runs_the_function_on_host_copies():
    seen = []

    def f(inputs, outputs):
        seen.append(type(inputs[0].data))
        outputs[0].feed(inputs[0].data + 1)

    gpu = DeviceOption(CUDA, 0)
    net = core.Net("on_gpu")
    with core.DeviceScope(gpu):
        y = net.Python(f, lambda i, o: o[0].feed(i[2].data))(["x"], ["y"])
        grads = net.AddGradientOperators([net.AveragedLoss(y, "loss")])
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32), gpu)
    workspace.RunNetOnce(net)
    assert seen == [np.ndarray]
    assert hasattr(workspace.current().blobs["y"], "copy_to_host")  # the output lives on the device
    assert workspace.FetchBlob("y").tolist() == [2.0, 3.0]
    np.testing.assert_allclose(workspace.FetchBlob(grads["x"]), [0.5, 0.5])
