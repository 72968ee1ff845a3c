"""nbcaffe.onnx.frontend: Caffe2 NetDefs -> ONNX models that onnx.checker accepts and ONNX
Runtime runs to the same numbers as nbcaffe (and as real Caffe2, where stored outputs exist)."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from google.protobuf import text_format  # noqa: E402

from nbcaffe import core, model_helper, workspace  # noqa: E402
from nbcaffe.models import MODELS, input_shape  # noqa: E402
from nbcaffe.onnx import frontend  # noqa: E402
from nbcaffe.onnx.helper import OnnxConversionError  # noqa: E402
from nbcaffe.proto import caffe2_pb2  # noqa: E402
from tests._paths import shared_data  # noqa: E402

ort.set_default_logger_severity(3)


def _check_and_session(model):
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _load_net(path):
    net = caffe2_pb2.NetDef()
    if path.endswith(".pbtxt"):
        text_format.Parse(open(path).read(), net)
    else:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    return net


# ---------------------------------------------------------------------------- zoo builders


@pytest.mark.parametrize("name", ["LeNet", "ResNet20", "MLP"])
def test_zoo_builder_export_matches_nbcaffe(name):
    """Random weights from param_init_net; ONNX Runtime on the export == nbcaffe (rtol 1e-4)."""
    spec = MODELS[name]
    model = model_helper.ModelHelper(name=name.lower())
    out = str(spec.build(model, "data", is_test=True))
    shape = input_shape(name, 2)
    workspace.RunNetOnce(model.param_init_net)
    params = {str(b): workspace.FetchBlob(str(b)) for b in model.GetAllParams()}
    exported = frontend.caffe2_net_to_onnx_model(model.net.Proto(), params=params,
                                                 value_info={"data": (onnx.TensorProto.FLOAT, shape)})
    assert [o.name for o in exported.graph.output] == [out]
    assert exported.opset_import[0].version == frontend.OPSET
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(model.net)
    expected = workspace.FetchBlob(out)
    got = _check_and_session(exported).run([out], {"data": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_init_net_values_become_initializers():
    """Without params=, the init net runs once at export and its blobs are the initializers."""
    model = model_helper.ModelHelper(name="lenet_init")
    out = str(MODELS["LeNet"].build(model, "data", is_test=True))
    exported = frontend.caffe2_net_to_onnx_model(model.net.Proto(), model.param_init_net.Proto(),
                                                 value_info={"data": (np.float32, (1, 1, 28, 28))})
    names = {t.name for t in exported.graph.initializer}
    assert {"conv1_w", "conv1_b", "pred_w", "pred_b"} <= names
    x = np.random.default_rng(1).random((1, 1, 28, 28), np.float32)
    ws = workspace.Workspace("check")
    for t in exported.graph.initializer:
        ws.feed_blob(t.name, onnx.numpy_helper.to_array(t))
    ws.feed_blob("data", x)
    ws.run_net_once(model.net.Proto())
    got = _check_and_session(exported).run([out], {"data": x})[0]
    np.testing.assert_allclose(got, ws.fetch_blob(out), rtol=1e-4, atol=1e-6)


def test_in_place_ops_are_renamed_to_single_assignment():
    net = core.Net("inplace")
    net.Relu(["x"], ["x"])
    net.Scale(["x"], ["x"], scale=2.0)
    net.Sigmoid(["x"], ["y"])
    net.AddExternalOutput("x")
    net.AddExternalOutput("y")
    exported = frontend.caffe2_net_to_onnx_model(net.Proto(), value_info={"x": (np.float32, (2, 3))})
    outputs = [o.name for o in exported.graph.output]
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], np.float32)
    got = dict(zip(outputs, _check_and_session(exported).run(outputs, {"x": x})))
    r = np.maximum(x, 0) * 2
    np.testing.assert_allclose(got[outputs[0]], r)
    np.testing.assert_allclose(got["y"], 1 / (1 + np.exp(-r)), rtol=1e-6)


def test_legacy_broadcast_softmax_and_fc_axis():
    """Caffe2-only semantics: Add with broadcast=1/axis, Softmax flattening at axis 1 of a 4-D
    input, FC on a 4-D input flattened at axis 2."""
    rng = np.random.default_rng(2)
    net = core.Net("semantics")
    net.Add(["x", "b"], ["xb"], broadcast=1, axis=1)
    net.Softmax(["xb"], ["sm"], axis=1)
    net.FC(["sm", "w", "bias"], ["fc"], axis=2)
    net.AddExternalOutput("fc")
    params = {"b": rng.standard_normal(3).astype(np.float32), "w": rng.standard_normal((5, 20)).astype(np.float32),
              "bias": rng.standard_normal(5).astype(np.float32)}
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    exported = frontend.caffe2_net_to_onnx_model(net.Proto(), params=params, value_info={"x": (np.float32, x.shape)})
    ws = workspace.Workspace("sem")
    for k, v in {**params, "x": x}.items():
        ws.feed_blob(k, v)
    ws.run_net_once(net.Proto())
    got = _check_and_session(exported).run(["fc"], {"x": x})[0]
    np.testing.assert_allclose(got, ws.fetch_blob("fc"), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- real Caffe2 files


_ZOO_SMALL = ["resnet50", "inception_v1", "inception_v2", "densenet121"]
# FC-heavy nets: the constant-weight init nets hold 60-140 M parameters (hundreds of MB)
_ZOO_LARGE = ["bvlc_alexnet", "zfnet512", "vgg19"]


@pytest.mark.parametrize("name", _ZOO_SMALL + _ZOO_LARGE)
def test_zoo_predict_net_export(name):
    """Caffe2 model-zoo predict nets with their constant-weight init nets: the export runs in
    ONNX Runtime to real Caffe2's stored output (and nbcaffe's)."""
    if name in _ZOO_LARGE and not os.environ.get("NBCAFFE_ONNX_LARGE"):
        pytest.skip("FC-heavy zoo net (>60 M constant weights, several seconds); set NBCAFFE_ONNX_LARGE=1")
    folder = shared_data("caffe2", "zoo_predict_nets", name)
    predict = _load_net(str(folder / "predict_net.pbtxt"))
    init = _load_net(str(folder / "init_net_const002.pbtxt"))
    (data, (dtype, shape)), = json.load(open(folder / "value_info.json")).items()
    exported = frontend.caffe2_net_to_onnx_model(predict, init, value_info={data: (dtype, shape)})
    n = int(np.prod(shape))
    x = (np.arange(n).reshape(shape) / n).astype(np.float32)
    out = predict.external_output[-1]
    got = _check_and_session(exported).run([out], {data: x})[0]
    expected = np.load(glob.glob(str(folder / "caffe2.const002.*.npy"))[0])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    ws = workspace.Workspace("zoo")
    ws.run_net_once(init)
    ws.feed_blob(data, x)
    ws.run_net_once(predict)
    np.testing.assert_allclose(got, ws.fetch_blob(out), rtol=1e-4, atol=1e-6)


_CAFFE2_FILES = ["translated_from_caffe1/lenet_mnist", "translated_from_caffe1/cifar10_quick_v1",
                 "translated_from_caffe1/mtcnn_det1", "translated_from_caffe1/mtcnn_det2",
                 "translated_from_caffe1/mtcnn_det3", "pytorch_onnx_lenet", "squeezenet_trafficlight"] + \
    [f"translated_from_caffe1/opencv_layer_tests/{t}" for t in
     ("layer_batch_norm", "layer_convolution", "layer_lrn_channels", "layer_pooling_ave", "layer_pooling_max",
      "layer_prelu", "layer_softmax")]


@pytest.mark.parametrize("rel", _CAFFE2_FILES)
def test_real_caffe2_nets_export(rel):
    """NetDefs written by real Caffe2 (its Caffe1 translator, onnx-caffe2, a zoo fine-tune) with
    real weights: ONNX Runtime on the export reproduces real Caffe2's stored outputs.  The
    Caffe1 translations carry legacy_pad=3 (Caffe's ceil-mode pooling), PRelu, LRN, SpatialBN."""
    folder = shared_data("caffe2", *rel.split("/"))
    predict = _load_net(str(folder / "predict_net.pb"))
    init = _load_net(str(folder / "init_net.pb"))
    x = np.load(folder / "input.npy")
    data = predict.external_input[0]
    exported = frontend.caffe2_net_to_onnx_model(predict, init, value_info={data: (x.dtype, x.shape)})
    session = _check_and_session(exported)
    outputs = [o.name for o in exported.graph.output]
    checked = 0
    for ref in sorted(folder.glob("caffe2.*.npy")):
        name = ref.name[len("caffe2."):-len(".npy")]
        name = name[len("output_"):] if name.startswith("output_") else name
        if name not in outputs:
            continue
        got = session.run([name], {data: x})[0]
        np.testing.assert_allclose(got, np.load(ref), rtol=1e-4, atol=1e-5, err_msg=f"{rel}: {name}")
        checked += 1
    assert checked


# ---------------------------------------------------------------------------- errors


def test_unsupported_op_error_names_the_op():
    net = core.Net("bad")
    net.LabelCrossEntropy(["x", "label"], ["xent"])
    with pytest.raises(OnnxConversionError, match=r"op #0 LabelCrossEntropy.*no ONNX export"):
        frontend.caffe2_net_to_onnx_model(net.Proto(), value_info={"x": (np.float32, (2, 3)),
                                                                   "label": (np.int32, (2,))})


def test_missing_value_info_is_named():
    net = core.Net("noinfo")
    net.Relu(["x"], ["y"])
    net.AddExternalOutput("y")
    with pytest.raises(OnnxConversionError, match="'x'.*value_info"):
        frontend.caffe2_net_to_onnx_model(net.Proto())


def test_training_mode_ops_are_refused_with_shapes():
    net = core.Net("train")
    net.Dropout(["x"], ["y", "mask"], ratio=0.5, is_test=0)
    with pytest.raises(OnnxConversionError, match=r"Dropout.*is_test=0.*\n.*x \(4, 5\) float32"):
        frontend.caffe2_net_to_onnx_model(net.Proto(), value_info={"x": (np.float32, (4, 5))})


# ---------------------------------------------------------------------------- nbcaffe's Caffe1 translator

# (folder under ../shared/testdata/caffe1, prototxt, weights stem, input blob, outputs, reference)
_CAFFE1 = [
    ("lenet_mnist", "lenet.prototxt", "lenet_iter_10000", "data", ["prob"], "caffe"),
    ("lenet_mnist_v1", "lenet.prototxt", "lenet_iter_10000", "data", ["prob"], "caffe"),
    ("cifar10_quick_v1", "cifar10_quick.prototxt", "cifar10_quick_iter_5000", "data", ["prob"], "caffe"),
    ("cifar10_full_v1", "cifar10_full.prototxt", "cifar10_full_iter_70000", "data", ["prob"], "caffe"),
    ("mtcnn", "det1.prototxt", "det1", "data", ["conv4-2", "prob1"], "caffe"),
    ("mtcnn", "det2.prototxt", "det2", "data", ["conv5-2", "prob1"], "caffe"),
    ("mtcnn", "det3.prototxt", "det3", "data", ["conv6-2", "conv6-3", "prob1"], "caffe"),
    ("mtcnn", "det4.prototxt", "det4", "data", [f"fc5_{i}" for i in range(1, 6)], "caffe"),
    ("ultraface_rfb320", "RFB-320.prototxt", "RFB-320", "input", ["scores", "boxes"], "cv2"),
    ("ultraface_slim320", "slim-320.prototxt", "slim-320", "input", ["scores", "boxes"], "cv2"),
] + [("opencv_layer_tests", f"{name}.prototxt", name, None, ["output"], "caffe") for name in (
    "layer_batch_norm", "layer_convolution", "layer_deconvolution", "layer_eltwise", "layer_inner_product",
    "layer_lrn_channels", "layer_lrn_spatial", "layer_mvn", "layer_pooling_ave", "layer_pooling_max", "layer_prelu",
    "layer_softmax", "reshape_and_slice_routines")]


@pytest.mark.parametrize("folder,prototxt,stem,input_name,outputs,ref", _CAFFE1,
                         ids=[f"{c[0]}/{c[2]}" for c in _CAFFE1])
def test_translated_caffe1_models_export(folder, prototxt, stem, input_name, outputs, ref):
    """Caffe1 models translated by nbcaffe's translator, exported to ONNX: ONNX Runtime gives
    the real Caffe's (or OpenCV's) stored outputs (rtol 1e-4, atol 1e-5, as the translator's
    own tests)."""
    from nbcaffe import caffe_translator

    root = shared_data("caffe1", folder)
    x = np.load(root / f"{stem}.input.npy")
    dims = {input_name: list(x.shape)} if input_name else list(x.shape)
    init_net, predict_net = caffe_translator.TranslatePretrainedModel(str(root / prototxt),
                                                                      str(root / f"{stem}.caffemodel"),
                                                                      input_dims=dims)
    input_name = input_name or predict_net.external_input[0]
    exported = frontend.caffe2_net_to_onnx_model(predict_net, init_net, value_info={input_name: (x.dtype, x.shape)})
    session = _check_and_session(exported)
    for name in outputs:
        got = session.run([name], {input_name: x})[0]
        np.testing.assert_allclose(got, np.load(root / f"{stem}.{ref}.{name}.npy"), rtol=1e-4, atol=1e-5,
                                   err_msg=f"{folder}/{stem}: {name}")


def test_command_line_round_trip(tmp_path):
    """python -m nbcaffe.onnx caffe2-to-onnx, then onnx-to-caffe2, on the onnx-caffe2 LeNet."""
    import subprocess
    import sys

    folder = shared_data("caffe2", "pytorch_onnx_lenet")
    model_path, predict, init = tmp_path / "lenet.onnx", tmp_path / "predict.pbtxt", tmp_path / "init.pb"
    cmd = [sys.executable, "-m", "nbcaffe.onnx"]
    subprocess.run(cmd + ["caffe2-to-onnx", str(folder / "predict_net.pb"), "--init-net", str(folder / "init_net.pb"),
                          "--value-info", '{"1": [1, [2, 1, 28, 28]]}', "-o", str(model_path)], check=True)
    subprocess.run(cmd + ["onnx-to-caffe2", str(model_path), "-o", str(predict), "--init-net-output", str(init)],
                   check=True)
    x = np.load(folder / "input.npy")
    ws = workspace.Workspace("cli")
    ws.run_net_once(_load_net(str(init)))
    ws.feed_blob("1", x)
    net = _load_net(str(predict))
    ws.run_net_once(net)
    np.testing.assert_allclose(ws.fetch_blob(net.external_output[0]), np.load(folder / "caffe2.output_26.npy"),
                               rtol=1e-4, atol=1e-5)
