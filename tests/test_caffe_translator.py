"""The Caffe translator on real Caffe models: outputs and intermediate blobs against the
stored outputs of the real Caffe (or OpenCV where Caffe cannot load the net), MNIST digits,
V1 vs upgraded models, the command line, and the generated caffe_pb2 module.

Data: ../shared/testdata/caffe1/<model>/ (README there: inputs, outputs, references).
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from nbcaffe import caffe_translator as ct
from nbcaffe import utils, workspace
from nbcaffe.proto import caffe_pb2
from tests._paths import REPO, shared_data

RTOL, ATOL = 1e-4, 1e-5

# (folder, prototxt, weights stem, input blob, outputs, reference kind)
MODELS = [
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
]
OPENCV_LAYER_TESTS = ["layer_batch_norm", "layer_convolution", "layer_deconvolution", "layer_eltwise",
                      "layer_inner_product", "layer_lrn_channels", "layer_lrn_spatial", "layer_mvn",
                      "layer_pooling_ave", "layer_pooling_max", "layer_prelu", "layer_softmax",
                      "reshape_and_slice_routines"]


def run_translated(init_net, predict_net, feeds, fetch):
    """Run init then predict in a fresh workspace; host copies of ``fetch`` (absent ones skipped)."""
    with workspace.temp_workspace("_caffe_translator_test_"):
        workspace.RunNetOnce(init_net)
        for name, value in feeds.items():
            workspace.FeedBlob(name, value)
        workspace.RunNetOnce(predict_net)
        return {name: workspace.FetchBlob(name) for name in fetch if workspace.HasBlob(name)}


def assert_matches(got, want, what, rtol=RTOL, atol=ATOL):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def prototxt_tops(path):
    net = ct.as_current(str(path), "prototxt")
    return {top for layer in net.layer for top in layer.top}


@pytest.mark.parametrize("folder,prototxt,stem,input_name,outputs,ref", MODELS,
                         ids=[f"{m[0]}/{m[2]}" for m in MODELS])
def test_model_reproduces_reference_outputs(folder, prototxt, stem, input_name, outputs, ref):
    root = shared_data("caffe1", folder)
    x = np.load(root / f"{stem}.input.npy")
    init_net, predict_net = ct.TranslatePretrainedModel(str(root / prototxt), str(root / f"{stem}.caffemodel"),
                                                        input_dims={input_name: list(x.shape)})
    assert set(outputs) <= set(predict_net.external_output)
    blobs_file = root / f"{stem}.caffe.blobs.npz"
    stored = np.load(blobs_file) if blobs_file.exists() else None
    # Caffe's auto-inserted *_split_* blobs are not in the prototxt, so not in the translation
    inner = sorted(set(stored.files) & prototxt_tops(root / prototxt)) if stored is not None else []
    got = run_translated(init_net, predict_net, {input_name: x}, outputs + inner)
    for name in outputs:
        assert_matches(got[name], np.load(root / f"{stem}.{ref}.{name}.npy"), f"{folder}/{stem} output {name}")
        if ref == "caffe":  # OpenCV's independent import agrees too
            assert_matches(got[name], np.load(root / f"{stem}.cv2.{name}.npy"), f"{folder}/{stem} {name} vs cv2")
    for name in inner:
        want = stored[name]
        # float32 noise grows with a blob's magnitude: Caffe's own conv2 of cifar10_full is 2.3e-4 off
        # the float64 result on values up to 346, so intermediate blobs get atol relative to their scale
        scale = max(1.0, float(np.abs(want).max()))
        assert_matches(got[name], want, f"{folder}/{stem} blob {name} (scale {scale:.3g})", atol=ATOL * scale)


@pytest.mark.parametrize("name", OPENCV_LAYER_TESTS)
def test_opencv_layer_test_reproduces_caffe(name):
    root = shared_data("caffe1", "opencv_layer_tests")
    x = np.load(root / f"{name}.input.npy")
    init_net, predict_net = ct.TranslatePretrainedModel(str(root / f"{name}.prototxt"),
                                                        str(root / f"{name}.caffemodel"), input_dims=list(x.shape))
    got = run_translated(init_net, predict_net, {predict_net.external_input[0]: x}, ["output"])
    assert_matches(got["output"], np.load(root / f"{name}.caffe.output.npy"), f"opencv_layer_tests/{name}")


@pytest.mark.parametrize("folder", ["lenet_mnist", "lenet_mnist_v1"])
def test_lenet_classifies_mnist_like_caffe(folder):
    root = shared_data("caffe1", folder)
    images = np.load(shared_data("caffe1", "lenet_mnist", "mnist_t10k_first200.images_u8.npy"))
    labels = np.load(shared_data("caffe1", "lenet_mnist", "mnist_t10k_first200.labels.npy"))
    caffe_prob = np.load(root / "mnist_t10k_first200.caffe.prob.npy")
    # the prototxt declares a batch of 1 (64 for the V1 file); the net is batch-size agnostic
    init_net, predict_net = ct.TranslatePretrainedModel(str(root / "lenet.prototxt"),
                                                        str(root / "lenet_iter_10000.caffemodel"))
    data = (images.astype(np.float32) / 256.0).reshape(-1, 1, 28, 28)
    prob = run_translated(init_net, predict_net, {"data": data}, ["prob"])["prob"]
    assert_matches(prob, caffe_prob, f"{folder} MNIST probabilities")
    np.testing.assert_array_equal(prob.argmax(axis=1), caffe_prob.argmax(axis=1))
    assert (prob.argmax(axis=1) == labels).mean() == (caffe_prob.argmax(axis=1) == labels).mean() >= 0.99


@pytest.mark.parametrize("folder,prototxt,stem", [
    ("lenet_mnist_v1", "lenet", "lenet_iter_10000"),
    ("cifar10_quick_v1", "cifar10_quick", "cifar10_quick_iter_5000"),
    ("cifar10_full_v1", "cifar10_full", "cifar10_full_iter_70000"),
])
def test_v1_model_translates_like_its_upgraded_copy(folder, prototxt, stem):
    """Caffe's upgrade tools made *.upgraded.*; upgrading V1 here must give the same NetDef
    and the same parameters."""
    root = shared_data("caffe1", folder)
    upgraded_weights = root / f"{stem}.upgraded.caffemodel"
    v1 = ct.TranslateModel(str(root / f"{prototxt}.prototxt"), str(root / f"{stem}.caffemodel"))
    current = ct.TranslateModel(str(root / f"{prototxt}.upgraded.prototxt"),
                                str(upgraded_weights if upgraded_weights.exists() else root / f"{stem}.caffemodel"))
    assert v1[0] == current[0]
    assert v1[1] == current[1]
    raw = caffe_pb2.NetParameter()
    raw.ParseFromString((root / f"{stem}.caffemodel").read_bytes())
    assert len(raw.layers) and not len(raw.layer)  # really a V1 file


def test_mtcnn_pnet_stays_fully_convolutional():
    """det1 is translated for 12x12 but run on a larger image: the per-position softmax over
    the two classes must still sum to 1 everywhere (a flattening Softmax would not)."""
    root = shared_data("caffe1", "mtcnn")
    init_net, predict_net = ct.TranslatePretrainedModel(str(root / "det1.prototxt"), str(root / "det1.caffemodel"))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 30, 24)).astype(np.float32)
    got = run_translated(init_net, predict_net, {"data": x}, ["prob1", "conv4-2"])
    assert got["prob1"].shape == (1, 2, 10, 7) and got["conv4-2"].shape == (1, 4, 10, 7)
    np.testing.assert_allclose(got["prob1"].sum(axis=1), 1.0, rtol=1e-6)


def test_remove_legacy_pad_gives_the_same_outputs():
    root = shared_data("caffe1", "cifar10_full_v1")
    x = np.load(root / "cifar10_full_iter_70000.input.npy")
    args = (str(root / "cifar10_full.prototxt"), str(root / "cifar10_full_iter_70000.caffemodel"))
    init_a, legacy = ct.TranslatePretrainedModel(*args, input_dims=list(x.shape))
    init_b, explicit = ct.TranslatePretrainedModel(*args, input_dims=list(x.shape), remove_legacy_pad=True)
    assert any(a.name == "legacy_pad" for op in legacy.op for a in op.arg)
    assert not any(a.name == "legacy_pad" for op in explicit.op for a in op.arg)
    a = run_translated(init_a, legacy, {"data": x}, ["prob", "pool1"])
    b = run_translated(init_b, explicit, {"data": x}, ["prob", "pool1"])
    np.testing.assert_array_equal(a["pool1"], b["pool1"])
    np.testing.assert_allclose(a["prob"], b["prob"], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- command line

def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nbcaffe.caffe_translator", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("text", [False, True])
def test_cli_round_trip(tmp_path, text):
    root = shared_data("caffe1", "lenet_mnist")
    init_path, predict_path = tmp_path / "init.out", tmp_path / "predict.out"
    result = _cli(root / "lenet.prototxt", root / "lenet_iter_10000.caffemodel", "--init_net", init_path,
                  "--predict_net", predict_path, *(["--text"] if text else []), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init.out", "predict.out"]  # no temporary left
    init_net, predict_net = utils.read_net(init_path), utils.read_net(predict_path)
    if text:
        assert init_path.read_bytes().startswith(b"name: \"LeNet_init\"\nop {")
    mem_init, mem_predict = ct.TranslatePretrainedModel(str(root / "lenet.prototxt"),
                                                        str(root / "lenet_iter_10000.caffemodel"))
    assert predict_net == mem_predict
    x = np.load(root / "lenet_iter_10000.input.npy")
    a = run_translated(init_net, predict_net, {"data": x}, ["prob"])["prob"]
    b = run_translated(mem_init, mem_predict, {"data": x}, ["prob"])["prob"]
    np.testing.assert_array_equal(a, b)
    assert_matches(a, np.load(root / "lenet_iter_10000.caffe.prob.npy"), "CLI LeNet")


def test_cli_defaults_and_errors(tmp_path):
    root = shared_data("caffe1", "cifar10_full_v1")
    result = _cli(root / "cifar10_full.prototxt", root / "cifar10_full_iter_70000.caffemodel", "--remove_legacy_pad",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    predict = utils.read_net(tmp_path / "predict_net.pb")
    assert (tmp_path / "init_net.pb").exists()
    assert not any(a.name == "legacy_pad" for op in predict.op for a in op.arg)
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x" input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n'
                   'layer { name: "t" type: "Threshold" bottom: "data" top: "t" }\n')
    result = _cli(bad, root / "cifar10_full_iter_70000.caffemodel", cwd=tmp_path)
    assert result.returncode == 1
    assert "layer 't' of type 'Threshold'" in result.stderr
    assert not (tmp_path / "init_net.pbtxt").exists()


# --------------------------------------------------------------------------- generated module

@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed")
def test_generated_caffe_pb2_is_current(tmp_path):
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("caffe_pb2.py", "caffe_pb2.pyi"):
        assert filecmp.cmp(tmp_path / name, REPO / "nbcaffe" / "proto" / name, shallow=False), (
            f"nbcaffe/proto/{name} is stale: run `python proto/generate.py` and commit the result")


def test_caffe_proto_field_numbers():
    """Spot checks of Caffe's wire numbers (reference §3)."""
    def number(msg, field):
        return msg.DESCRIPTOR.fields_by_name[field].number

    assert number(caffe_pb2.NetParameter, "layer") == 100 and number(caffe_pb2.NetParameter, "layers") == 2
    assert number(caffe_pb2.NetParameter, "input_shape") == 8 and number(caffe_pb2.NetParameter, "input_dim") == 4
    assert number(caffe_pb2.LayerParameter, "convolution_param") == 106
    assert number(caffe_pb2.LayerParameter, "batch_norm_param") == 139
    assert number(caffe_pb2.LayerParameter, "input_param") == 143
    assert number(caffe_pb2.LayerParameter, "clip_param") == 148
    assert number(caffe_pb2.LayerParameter, "permute_param") == 202
    assert number(caffe_pb2.LayerParameter, "roi_pooling_param") == 8266711
    assert number(caffe_pb2.V1LayerParameter, "convolution_param") == 10
    assert number(caffe_pb2.V1LayerParameter, "blobs_lr") == 7
    assert number(caffe_pb2.BlobProto, "double_data") == 8 and number(caffe_pb2.BlobProto, "shape") == 7
    assert number(caffe_pb2.ConvolutionParameter, "dilation") == 18
    assert number(caffe_pb2.PoolingParameter, "round_mode") == 13
    assert caffe_pb2.V1LayerParameter.DECONVOLUTION == 39 and caffe_pb2.V1LayerParameter.SOFTMAX_LOSS == 21
    assert caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["data"].is_packed
