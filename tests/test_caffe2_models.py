"""Real Caffe2 files: every init/predict NetDef pair under ../shared/testdata/caffe2/ loads (binary
and text), runs, and reproduces the outputs the real Caffe2 stored for it — on the CPU whole, and
on CUDA (a GPU or the simulator) whole for the small nets and op by op on slices of the real
inputs for the big ones (see tests/caffe2_files.py for why).

Data: ../shared/testdata/caffe2/<folder>/README.md says where each file comes from.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, errors, registry, utils, workspace
from nbcaffe.devices import CUDA
from nbcaffe.proto import caffe2_pb2
from tests import caffe2_files as cf
from tests._paths import shared_data

RTOL, ATOL = 1e-4, 1e-5
CASES = cf.cases()
IDS = [c.id for c in CASES]
# whole-net CUDA runs: nets the simulator gets through in a second or two
SMALL = {f"translated/{name}" for name in cf.OPENCV_LAYERS} | {"translated/mtcnn_det1"}


def _ready(case):
    shared_data(*case.folder.relative_to(cf.TESTDATA).parts)
    if case.kind == "light":
        pytest.importorskip("onnx")
    return case.nets()


def _run(init_net, predict_net, feeds, device=None):
    """Init net, feeds, predict net (created, then run) in a fresh workspace; every external
    output fetched to the host."""
    with workspace.temp_workspace("_caffe2_files_"):
        if device is not None:
            for net in (init_net, predict_net):
                for op in net.op:  # an explicit empty device_option {} in the file means CPU
                    op.device_option.CopyFrom(device)
        workspace.RunNetOnce(init_net)
        for name, value in feeds.items():
            workspace.FeedBlob(name, value, device)
        workspace.CreateNet(predict_net)
        workspace.RunNet(predict_net.name)
        return {name: workspace.FetchBlob(name) for name in predict_net.external_output}


def _compare(got, expected, what):
    for name, want in expected.items():
        assert got[name].shape == want.shape, f"{what} {name}: shape {got[name].shape}, Caffe2 {want.shape}"
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL, err_msg=f"{what} {name}")


@pytest.fixture(scope="module")
def cpu_results():
    """{case id: (outputs, expected)}: each big net runs once on the CPU per module."""
    cache = {}

    def get(case):
        if case.id not in cache:
            init_net, predict_net = _ready(case)
            feeds, expected = case.feeds_and_expected(predict_net)
            cache[case.id] = _run(init_net, predict_net, feeds), expected
        return cache[case.id]

    return get


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cpu_run_matches_caffe2(case, cpu_results):
    got, expected = cpu_results(case)
    assert expected, f"{case.id}: no stored output found"
    _compare(got, expected, case.id)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_text_and_binary_forms_load_the_same_net(case):
    for net in _ready(case):
        small = caffe2_pb2.NetDef()  # weight fills of over 100 kB take seconds as text: skip those
        small.CopyFrom(net)
        small.ClearField("op")
        small.op.extend(op for op in net.op if op.ByteSize() < 100_000)
        assert len(small.op) >= len(net.op) // 2
        assert utils.parse_text(str(small), caffe2_pb2.NetDef) == small
        assert utils.parse_proto(net.SerializeToString(), caffe2_pb2.NetDef) == net
    other = case.folder / "predict_net.pbtxt"
    if case.predict.endswith(".pb") and other.exists():  # Caffe2's translator wrote both forms
        assert utils.read_net(other) == utils.read_net(case.folder / case.predict)


def test_pytorch_lenet_classifies_mnist_like_caffe2():
    folder = shared_data("caffe2", "pytorch_onnx_lenet")
    images = np.load(shared_data("caffe1", "lenet_mnist", "mnist_t10k_first200.images_u8.npy"))
    expected = np.load(folder / "mnist_t10k_first200.caffe2.output_26.npy")
    x = (images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    got = _run(utils.read_net(folder / "init_net.pb"), utils.read_net(folder / "predict_net.pb"), {"1": x})["26"]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_zoo_nets_without_weights_parse_and_name_the_ops_nbcaffe_lacks():
    """Detectron / Mask R-CNN zoo nets come without init nets (Git-LFS weights); nbcaffe parses
    them and refuses them at CreateNet, naming the first op type it does not implement."""
    missing = {
        "detectron_e2e_faster_rcnn_R-50-C4_1x": {"BBoxTransform", "BoxWithNMSLimit", "GenerateProposals", "RoIAlign"},
        "mask_rcnn_2go_fp32": {"BBoxTransform", "BoxWithNMSLimit", "GenerateProposals", "If", "IsEmpty", "RoIAlign"},
        "mask_rcnn_2go_int8": {"BBoxTransform", "BoxWithNMSLimit", "GenerateProposals", "If", "IsEmpty", "RoIAlign",
                               "Int8AveragePool", "Int8Conv", "Int8ConvRelu", "Int8Dequantize", "Int8FC",
                               "Int8Quantize", "Int8Softmax", "Int8Sum"},
    }
    for name in cf.ZOO_WITHOUT_INIT:
        folder = shared_data("caffe2", "zoo_predict_nets", name)
        (path,) = [p for p in folder.iterdir() if p.suffix == ".pbtxt"]
        net = utils.read_net(path)
        unknown = {op.type for op in net.op if op.type not in registry.SCHEMAS}
        assert unknown == missing[name], f"{name}: update docs/deployment.md, unimplemented ops are now {unknown}"
        first = next(op.type for op in net.op if op.type in unknown)
        with workspace.temp_workspace("_caffe2_files_"):
            with pytest.raises(errors.UnsupportedOperatorError, match=f"'{first}' is not registered"):
                workspace.CreateNet(net, input_blobs=list(net.external_input))


def test_global_pooling_ignores_the_zero_kernel_caffe2s_translator_writes():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32)
    workspace.FeedBlob("x", x)
    for op_type, want in (("AveragePool", x.mean(axis=(2, 3), keepdims=True)),
                          ("MaxPool", x.max(axis=(2, 3), keepdims=True))):
        op = core.CreateOperator(op_type, ["x"], ["y"], kernel=0, stride=1, pad=0, global_pooling=1, legacy_pad=3)
        workspace.RunOperatorOnce(op)
        np.testing.assert_allclose(workspace.FetchBlob("y"), want, rtol=1e-6)


# ----------------------------------------------------------------------------- CUDA

@pytest.mark.cuda
@pytest.mark.parametrize("case", [c for c in CASES if c.id in SMALL], ids=sorted(SMALL))
def test_small_nets_run_whole_on_cuda_like_caffe2(case):
    init_net, predict_net = _ready(case)
    feeds, expected = case.feeds_and_expected(predict_net)
    got = _run(init_net, predict_net, feeds, device=core.DeviceOption(CUDA, 0))
    _compare(got, expected, f"{case.id} on CUDA")


_checked_on_cuda = set()  # op signatures already run on both devices in this session


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_distinct_op_runs_on_cuda_like_on_cpu(case):
    """Each distinct op of the net (type, engine, arguments, arity) on slices of the inputs it
    sees in the real CPU run, on both devices."""
    init_net, predict_net = _ready(case)
    feeds, _ = case.feeds_and_expected(predict_net)
    jobs = []
    with workspace.temp_workspace("_caffe2_files_"):
        workspace.RunNetOnce(init_net)
        for name, value in feeds.items():
            workspace.FeedBlob(name, value)
        for op in predict_net.op:
            key = cf.signature(op)
            if key not in _checked_on_cuda:
                _checked_on_cuda.add(key)
                jobs.append(cf.slice_op(op, [workspace.FetchBlob(b) for b in op.input]))
            workspace.RunOperatorOnce(op)
    for op, inputs in jobs:
        cpu, gpu = (_run_alone(op, inputs, device) for device in (None, core.DeviceOption(CUDA, 0)))
        for a, b, name in zip(cpu, gpu, op.output):
            scale = float(np.abs(a).max()) if a.size else 0.0
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * max(scale, 1.0),
                                       err_msg=f"{case.id}: {op.type} output {name} on {[x.shape for x in inputs]}")


def _run_alone(op, inputs, device):
    one = caffe2_pb2.OperatorDef()
    one.CopyFrom(op)
    one.input[:] = [f"in_{i}" for i in range(len(inputs))]
    one.output[:] = [f"out_{i}" for i in range(len(op.output))]
    one.ClearField("device_option")
    if device is not None:
        one.device_option.CopyFrom(device)
    with workspace.temp_workspace("_caffe2_op_"):
        for name, value in zip(one.input, inputs):
            workspace.FeedBlob(name, value, device)
        workspace.RunOperatorOnce(one)
        return [workspace.FetchBlob(name) for name in one.output]
