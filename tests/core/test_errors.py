"""Bad input gives a clear error naming the op (type, name, index), blobs and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, workspace
from nbcaffe.proto import caffe2_pb2

CPU = core.DeviceOption(caffe2_pb2.CPU)
CUDA = core.DeviceOption(caffe2_pb2.CUDA, 0)


def test_missing_input_blob_at_run_time():
    with pytest.raises(errors.BlobNotFoundError) as info:
        workspace.RunOperatorOnce(core.CreateOperator("Relu", ["nope"], ["y"], name="r1"))
    text = str(info.value)
    assert "Op #0 Relu (name 'r1')" in text and "'nope' is not in workspace" in text
    assert isinstance(info.value, RuntimeError)


def test_wrong_number_of_inputs_and_outputs():
    workspace.FeedBlob("x", np.ones(2, np.float32))
    with pytest.raises(errors.SchemaError, match=r"takes 3 input\(s\) \['X', 'W', 'b'\] but the OperatorDef has 2"):
        workspace.RunOperatorOnce(core.CreateOperator("FC", ["x", "x"], ["y"]))
    with pytest.raises(errors.SchemaError, match="produces 2 output"):
        workspace.RunOperatorOnce(core.CreateOperator("SoftmaxWithLoss", ["x", "x"], ["y"]))
    with pytest.raises(errors.SchemaError, match="at least 1 input"):
        workspace.RunOperatorOnce(core.CreateOperator("Sum", [], ["y"]))


def test_in_place_where_not_allowed():
    workspace.FeedBlob("x", np.ones((2, 2), np.float32))
    with pytest.raises(errors.SchemaError, match="cannot run in place"):
        workspace.RunOperatorOnce(core.CreateOperator("FC", ["x", "x", "b"], ["x"]))


def test_unknown_argument_with_suggestion_and_bad_argument_type():
    workspace.FeedBlob("x", np.ones(2, np.float32))
    with pytest.raises(errors.ArgumentError, match="unknown argument 'alpah'.*Did you mean: alpha"):
        workspace.RunOperatorOnce(core.CreateOperator("LeakyRelu", ["x"], ["y"], alpah=0.1))
    with pytest.raises(errors.ArgumentError, match="argument 'axis' should be an int .* gives s"):
        workspace.RunOperatorOnce(core.CreateOperator("Softmax", ["x"], ["y"], axis="one"))
    # builder-wide hints such as order/use_cudnn are accepted everywhere, as in Caffe2
    workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["y"], order="NCHW", use_cudnn=True))
    with pytest.raises(errors.ArgumentError, match="required argument 'to'"):
        workspace.RunOperatorOnce(core.CreateOperator("Cast", ["x"], ["y"]))


def test_shape_mismatch_names_blobs_and_shapes():
    workspace.FeedBlob("data", np.ones((4, 5), np.float32))
    workspace.FeedBlob("w", np.ones((3, 6), np.float32))
    workspace.FeedBlob("b", np.ones(3, np.float32))
    net = core.Net("shapes")
    net.FC(["data", "w", "b"], "y", name="fc_layer")
    workspace.CreateNet(net)
    with pytest.raises(errors.ShapeError) as info:
        workspace.RunNet("shapes")
    text = str(info.value)
    assert "Op #0 FC (name 'fc_layer') in net 'shapes'" in text
    assert "data (4, 5) float32 on CPU" in text and "w (3, 6) float32 on CPU" in text
    assert "K=5" in text and "K=6" in text and "test_errors.py" in text
    assert isinstance(info.value, ValueError) and info.value.op_type == "FC" and info.value.op_index == 0


def test_error_in_a_later_op_names_that_op():
    workspace.FeedBlob("x", np.ones((2, 3), np.float32))
    workspace.FeedBlob("label", np.array([0, 7], np.int32))
    net = core.Net("later")
    net.Relu("x", "h")
    net.SoftmaxWithLoss(["h", "label"], ["p", "loss"])
    workspace.CreateNet(net)
    with pytest.raises(errors.ShapeError, match=r"Op #1 SoftmaxWithLoss .*label 7 at position 1 is outside \[0, 3\)"):
        workspace.RunNet("later")


def test_unknown_operator_type():
    net = caffe2_pb2.NetDef(name="unknown")
    net.op.add(type="Rellu", input=["x"], output=["y"])
    workspace.FeedBlob("x", np.ones(1, np.float32))
    with pytest.raises(errors.UnsupportedOperatorError, match="'Rellu' is not registered. Did you mean: Relu"):
        workspace.RunNetOnce(net)


def test_unknown_engine_falls_back_to_default():
    workspace.FeedBlob("x", np.array([-1.0, 1.0], np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["y"], engine="CUDNN,NNPACK"))
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [0.0, 1.0])


def test_unknown_net_type_and_dtype_mismatch():
    net = caffe2_pb2.NetDef(name="typed", type="dagg")
    with pytest.raises(errors.SchemaError, match="Did you mean: dag"):
        workspace.RunNetOnce(net)
    workspace.FeedBlob("a", np.ones(2, np.float32))
    workspace.FeedBlob("b", np.ones(2, np.float64))
    with pytest.raises(errors.ShapeError, match="same dtype"):
        workspace.RunOperatorOnce(core.CreateOperator("Add", ["a", "b"], ["c"]))


def test_non_tensor_input_is_rejected_clearly():
    workspace.FeedBlob("s", "a string")
    with pytest.raises(errors.NbcaffeError, match="holds a bytes, not a tensor"):
        workspace.RunOperatorOnce(core.CreateOperator("Relu", ["s"], ["y"]))


@pytest.mark.cuda
def test_cpu_blob_fed_to_cuda_op_names_both_devices():
    workspace.FeedBlob("x", np.ones(3, np.float32))  # on the CPU
    with pytest.raises(errors.DeviceMismatchError) as info:
        workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["y"], device_option=CUDA))
    text = str(info.value)
    assert "lives on CPU" in text and "reads it on CUDA:0" in text and "CopyCPUToGPU" in text


@pytest.mark.cuda
def test_gpu_blob_fed_to_cpu_op_names_both_devices():
    workspace.FeedBlob("x", np.ones(3, np.float32), CUDA)
    with pytest.raises(errors.DeviceMismatchError, match="lives on CUDA, but this op reads it on CPU.*CopyGPUToCPU"):
        workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["y"]))


@pytest.mark.cuda
def test_copy_ops_move_blobs_between_devices():
    x = np.arange(4, dtype=np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunOperatorOnce(core.CreateOperator("CopyCPUToGPU", ["x"], ["x_gpu"], device_option=CUDA))
    workspace.RunOperatorOnce(core.CreateOperator("Relu", ["x_gpu"], ["y_gpu"], device_option=CUDA))
    workspace.RunOperatorOnce(core.CreateOperator("CopyGPUToCPU", ["y_gpu"], ["y"], device_option=CUDA))
    workspace.RunOperatorOnce(core.CreateOperator("EnsureCPUOutput", ["y_gpu"], ["z"], device_option=CUDA))
    workspace.RunOperatorOnce(core.CreateOperator("Copy", ["y_gpu"], ["w_gpu"], device_option=CUDA))
    from nbcaffe.devices import is_device_array

    assert is_device_array(workspace.current().blobs["x_gpu"]) and isinstance(workspace.current().blobs["y"],
                                                                               np.ndarray)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), x)
    np.testing.assert_array_equal(workspace.FetchBlob("z"), x)
    np.testing.assert_array_equal(workspace.FetchBlob("w_gpu"), x)
    with pytest.raises(errors.UnsupportedOperatorError, match="no kernel for CPU; it has kernels for: CUDA"):
        workspace.RunOperatorOnce(core.CreateOperator("CopyCPUToGPU", ["x"], ["q"]))
