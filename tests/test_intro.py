"""The Caffe2 intro runs verbatim (import line changed) and prints the NetDef Caffe2 prints."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
from google.protobuf import text_format

from nbcaffe import cnn, core, workspace
from nbcaffe.proto import caffe2_pb2
from tests._paths import REPO

# What Caffe2 prints for this model (ops, inputs, outputs, types, external inputs).
CAFFE2_OPS = [
    ("FC", ["data", "fc1_w", "fc1_b"], ["fc1"]),
    ("Sigmoid", ["fc1"], ["pred"]),
    ("SoftmaxWithLoss", ["pred", "label"], ["softmax", "loss"]),
]
CAFFE2_EXTERNAL_INPUTS = ["data", "fc1_w", "fc1_b", "label"]
CAFFE2_INIT_OPS = [("XavierFill", [], ["fc1_w"], [10, 100]), ("ConstantFill", [], ["fc1_b"], [10])]


def test_intro_script_prints_caffe2_netdef_and_trains(capsys):
    runpy.run_path(str(REPO / "examples" / "intro.py"), run_name="__main__")
    printed = capsys.readouterr().out
    text = printed[: printed.index("external_input: \"label\"") + len("external_input: \"label\"")]
    net = text_format.Parse(text, caffe2_pb2.NetDef())
    assert net.name == "my first net"
    assert \
        [(op.type, list(op.input), list(op.output)) for op in net.op] == [(t, i, o) for t, i, o in CAFFE2_OPS]
    assert list(net.external_input) == CAFFE2_EXTERNAL_INPUTS
    assert all(op.HasField("name") and op.name == "" for op in net.op)  # Caffe2 prints name: ""
    # The numbers: a NumPy forward pass from the fetched parameters and the last batch.
    W, b = workspace.FetchBlob("fc1_w"), workspace.FetchBlob("fc1_b")
    x, y = workspace.FetchBlob("data"), workspace.FetchBlob("label")
    z = 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ W.T + b)))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(workspace.FetchBlob("softmax"), p, atol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("loss"), -np.log(p[np.arange(16), y]).mean(), rtol=1e-5)
    assert workspace.FetchBlob("loss").shape == ()


def test_intro_init_net_matches_caffe2():
    m = cnn.CNNModelHelper(name="my first net")
    m.FC("data", "fc1", dim_in=100, dim_out=10)
    init = m.param_init_net.Proto()
    got = [(op.type, list(op.input), list(op.output), list(next(a for a in op.arg if a.name == "shape").ints))
           for op in init.op]
    assert got == [(t, i, o, s) for t, i, o, s in CAFFE2_INIT_OPS]
    workspace.RunNetOnce(m.param_init_net)
    w = workspace.FetchBlob("fc1_w")
    bound = np.sqrt(3.0 / 100)
    assert w.shape == (10, 100) and w.dtype == np.float32 and np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.8 * bound  # really uniform over the Xavier range
    np.testing.assert_array_equal(workspace.FetchBlob("fc1_b"), np.zeros(10, np.float32))


def build_intro(device):
    with core.DeviceScope(device):
        m = cnn.CNNModelHelper(name="intro")
        fc_1 = m.FC("data", "fc1", dim_in=100, dim_out=10)
        pred = m.Sigmoid(fc_1, "pred")
        m.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])
    return m


@pytest.mark.cuda
def test_intro_under_cuda_device_scope_matches_cpu():
    rng = np.random.default_rng(1)
    data = rng.random((16, 100)).astype(np.float32)
    label = (rng.random(16) * 10).astype(np.int32)
    results = []
    for device in (core.DeviceOption(caffe2_pb2.CPU), core.DeviceOption(caffe2_pb2.CUDA, 0)):
        workspace.ResetWorkspace()
        m = build_intro(device)
        assert all(op.device_option.device_type == device.device_type for op in m.net.Proto().op)
        with core.DeviceScope(device):
            workspace.FeedBlob("data", data)
            workspace.FeedBlob("label", label)
        workspace.RunNetOnce(m.param_init_net)
        workspace.FeedBlob("fc1_w", (np.arange(1000).reshape(10, 100) % 7 / 70 - 0.05).astype(np.float32), device)
        workspace.CreateNet(m.net)
        workspace.RunNet(m.net)
        results.append([workspace.FetchBlob(n) for n in ("softmax", "loss", "fc1_b")])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)
