"""The committed protobuf module is current, and real Caffe2 files parse and round-trip."""

from __future__ import annotations

import filecmp
import importlib.util
import pathlib
import subprocess
import sys

import pytest
from google.protobuf import text_format

from nbcaffe import errors, utils
from nbcaffe.proto import caffe2_pb2
from tests._paths import REPO, shared_data


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed")
def test_generated_module_is_current(tmp_path):
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("caffe2_pb2.py", "caffe2_pb2.pyi"):
        committed = REPO / "nbcaffe" / "proto" / name
        assert filecmp.cmp(tmp_path / name, committed, shallow=False), (
            f"{committed} is stale: run `python proto/generate.py` and commit the result")


def test_field_numbers_match_caffe2():
    """Spot-check the wire contract (numbers from Caffe2's caffe2.proto)."""
    f = lambda msg, name: msg.DESCRIPTOR.fields_by_name[name].number  # noqa: E731
    assert f(caffe2_pb2.TensorProto, "raw_data") == 13
    assert f(caffe2_pb2.TensorProto, "segment") == 11
    assert f(caffe2_pb2.TensorProto, "int64_data") == 10
    assert f(caffe2_pb2.Argument, "n") == 8 and f(caffe2_pb2.Argument, "nets") == 9
    assert f(caffe2_pb2.Argument, "t") == 10 and f(caffe2_pb2.Argument, "tensors") == 11
    assert f(caffe2_pb2.DeviceOption, "device_id") == 2
    assert f(caffe2_pb2.OperatorDef, "is_gradient_op") == 9
    assert f(caffe2_pb2.NetDef, "external_output") == 8
    assert f(caffe2_pb2.ExecutionStep, "should_stop_blob") == 9
    assert f(caffe2_pb2.BlobProto, "content_chunk_id") == 7
    assert f(caffe2_pb2.QTensorProto, "is_multiparam") == 12
    assert caffe2_pb2.TensorProto.FLOAT16 == 12 and caffe2_pb2.TensorProto.DOUBLE == 13
    assert caffe2_pb2.CUDA == 1 and caffe2_pb2.PROTO_CUDA == 1
    assert caffe2_pb2.TensorProto.DESCRIPTOR.fields_by_name["float_data"].is_packed
    assert not caffe2_pb2.Argument.DESCRIPTOR.fields_by_name["floats"].is_packed


def _caffe2_files(suffix):
    root = shared_data("caffe2")
    files = sorted(root.rglob(f"*{suffix}"))
    assert files, f"no {suffix} files under {root}"
    return files


def test_every_binary_netdef_parses_and_reserialises_byte_identically():
    for path in _caffe2_files(".pb"):
        data = path.read_bytes()
        net = caffe2_pb2.NetDef()
        net.ParseFromString(data)
        assert len(net.op) > 0, path
        assert net.SerializeToString() == data, f"{path} does not re-serialise to the same bytes"


def test_every_text_netdef_parses():
    for path in _caffe2_files(".pbtxt"):
        net = utils.parse_text(path.read_text(), caffe2_pb2.NetDef, str(path))
        assert len(net.op) > 0, path
        # and text -> binary -> text is stable
        again = caffe2_pb2.NetDef()
        again.ParseFromString(net.SerializeToString())
        assert again == net


def test_binary_and_text_forms_of_a_translated_net_agree():
    folder = shared_data("caffe2", "translated_from_caffe1", "lenet_mnist")
    binary = utils.read_net(folder / "predict_net.pb")
    text = utils.read_net(folder / "predict_net.pbtxt")
    assert binary == text


def test_round_trip_of_every_field_kind():
    net = caffe2_pb2.NetDef(name="rt", type="dag", num_workers=2)
    op = net.op.add(type="Foo", input=["a"], output=["b"], name="n", engine="X", is_gradient_op=True,
                    debug_info="here", control_input=["c"])
    op.device_option.CopyFrom(caffe2_pb2.DeviceOption(device_type=1, device_id=3, random_seed=7, node_name="h"))
    op.arg.extend([utils.MakeArgument("f", 1.5), utils.MakeArgument("i", 3), utils.MakeArgument("s", "txt"),
                   utils.MakeArgument("fs", [1.0, 2.0]), utils.MakeArgument("is", [1, 2]),
                   utils.MakeArgument("ss", ["a", "b"]), utils.MakeArgument("n", caffe2_pb2.NetDef(name="inner")),
                   utils.MakeArgument("t", utils.NumpyArrayToCaffe2Tensor(__import__("numpy").ones(2)))])
    net.external_input.append("a")
    data = net.SerializeToString()
    back = caffe2_pb2.NetDef.FromString(data)
    assert back == net and back.SerializeToString() == data
    assert text_format.Parse(str(net), caffe2_pb2.NetDef()) == net


def test_cuda_gpu_id_spelling_is_accepted_in_text():
    net = utils.parse_text('name: "x" op { type: "Relu" device_option { device_type: 1 cuda_gpu_id: 2 } }',
                           caffe2_pb2.NetDef)
    assert net.op[0].device_option.device_id == 2


def test_malformed_bytes_raise_proto_error_naming_the_type():
    with pytest.raises(errors.ProtoError, match="caffe2.NetDef"):
        utils.parse_proto(b"\x0a\xff\xff\xff\xff\x0f garbage", caffe2_pb2.NetDef, "bad.pb")
    with pytest.raises(errors.ProtoError, match="text format"):
        utils.parse_text("op { type: ", caffe2_pb2.NetDef)


def test_truncated_real_file_is_rejected(tmp_path):
    data = (shared_data("caffe2", "translated_from_caffe1", "lenet_mnist") / "init_net.pb").read_bytes()
    with pytest.raises(errors.ProtoError):
        utils.parse_proto(data[: len(data) // 2], caffe2_pb2.NetDef, "half.pb")


def test_tensor_proto_conversions_round_trip():
    import numpy as np

    for array in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.5, -2.0]), np.array([1, 2 ** 40]),
                  np.array([True, False]), np.arange(4, dtype=np.uint8), np.arange(3, dtype=np.int16),
                  np.array([0.5, -1.25], np.float16), np.zeros((0, 3), np.float32)):
        back = utils.Caffe2TensorToNumpyArray(utils.NumpyArrayToCaffe2Tensor(array))
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    raw = caffe2_pb2.TensorProto(dims=[2], data_type=caffe2_pb2.TensorProto.FLOAT,
                                 raw_data=np.array([1.0, 2.0], "<f4").tobytes())
    np.testing.assert_array_equal(utils.Caffe2TensorToNumpyArray(raw), [1.0, 2.0])
    short = caffe2_pb2.TensorProto(dims=[3], data_type=caffe2_pb2.TensorProto.FLOAT, float_data=[1.0])
    with pytest.raises(errors.ProtoError, match="need 3 values"):
        utils.Caffe2TensorToNumpyArray(short)


def test_generate_script_is_importable_without_grpc_tools():
    spec = importlib.util.spec_from_file_location("gen", pathlib.Path(REPO / "proto" / "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PROTOS == ("caffe2.proto", "caffe.proto")
