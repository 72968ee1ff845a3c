"""The benchmark CLI, BenchmarkNet, and the PyTorch peer interpreter it compares against
(which doubles as an independent check of whole zoo models)."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import benchmark, model_helper, workspace
from nbcaffe.models import MODELS, input_shape


def test_benchmark_net_returns_caffe2_list():
    m = model_helper.ModelHelper(name="bn_list")
    MODELS["MLP"].build(m, "data")
    workspace.FeedBlob("data", np.ones((4, 100), np.float32))
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    overall = workspace.BenchmarkNet(m.net.Name(), 2, 5, False)
    assert len(overall) == 1 and overall[0] > 0
    per_op = workspace.BenchmarkNet(m.net, 1, 3, True)
    assert len(per_op) == 1 + len(m.net.Proto().op) and all(t >= 0 for t in per_op)
    text = workspace.format_op_timings(workspace.current().nets[m.net.Name()], per_op)
    assert "FC" in text and "Per operator type" in text
    with pytest.raises(RuntimeError, match="has not been created"):
        workspace.BenchmarkNet("nope", 1, 1, False)


def test_cli_runs_and_reports(capsys):
    results = benchmark.main(["--model", "MLP", "--batch_size", "8", "--iterations", "3", "--warmup_iterations", "1",
                              "--layer_wise_benchmark", "--device", "both", "--optimizer", "sgd"])
    out = capsys.readouterr().out
    assert "CPU" in results and results["CPU"][0] > 0
    assert "images/s" in out and "Per-operator times on CPU" in out and "MomentumSGDUpdate" in out
    if "GPU" not in results:
        assert "GPU" in out and ("simulator" in out or "no CUDA device" in out)


def test_cli_compare_onnxruntime_runs_the_exported_model(capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (test extra)")
    benchmark.main(["--model", "LeNet", "--batch_size", "2", "--iterations", "2", "--warmup_iterations", "1",
                    "--forward_only", "--compare", "onnxruntime"])
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("ONNX Runtime"))
    diff = float(line.split("outputs agree to ")[1].split(")")[0])
    assert diff < 1e-5, line  # the same weights give the same softmax in ORT
    assert "nbcaffe/ORT time ratio" in line
    benchmark.main(["--model", "MLP", "--batch_size", "2", "--iterations", "1", "--compare", "onnxruntime"])
    assert "inference only" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["LeNet", "ResNet20"])
def test_torch_peer_reproduces_zoo_models(name):
    """Whole zoo models, forward and every parameter gradient, against PyTorch autograd.

    Both run in float64 (nbcaffe's kernels take float64 blobs): in float32 a ReLU whose input
    is within rounding of 0 flips between the two frameworks and moves ResNet-20's gradients
    by ~1e-3 for some initialisations, in either direction, so a float32 comparison could only
    be a loose or flaky one; in float64 they agree to ~1e-13."""
    pytest.importorskip("torch")
    from nbcaffe import peer_torch

    m = model_helper.ModelHelper(name=f"peer_{name}")
    softmax = MODELS[name].build(m, "data", is_test=False)
    xent = m.net.LabelCrossEntropy([softmax, "label"], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    m.AddGradientOperators([loss])
    rng = np.random.default_rng(0)
    x = rng.random(input_shape(name, 4))
    y = rng.integers(0, MODELS[name].num_labels, 4).astype(np.int32)
    workspace.RunNetOnce(m.param_init_net)
    params = {str(p): workspace.FetchBlob(p).astype(np.float64) for p in m.params + m.GetComputedParams()}
    for blob, value in params.items():
        workspace.FeedBlob(blob, value)
    workspace.FeedBlob("data", x)
    workspace.FeedBlob("label", y)
    workspace.RunNetOnce(m.net)
    net = peer_torch.TorchNet(m.net.Proto(), params, trainable=[str(p) for p in m.params])
    assert net.unsupported == []
    blobs = net.forward({"data": x, "label": y}, training=True)
    ours_softmax = workspace.FetchBlob(softmax)
    assert ours_softmax.dtype == np.float64
    np.testing.assert_allclose(blobs[str(softmax)].detach().numpy(), ours_softmax, rtol=1e-10, atol=1e-12)
    blobs["loss"].backward()
    grads = {name_: p.grad.numpy() for name_, p in zip([str(p) for p in m.params], net.parameters)}
    for param in m.params:
        expected = grads[str(param)]
        np.testing.assert_allclose(workspace.FetchBlob(m.param_to_grad[param]), expected, rtol=1e-9,
                                   atol=1e-11 * max(1.0, float(np.abs(expected).max())), err_msg=str(param))
