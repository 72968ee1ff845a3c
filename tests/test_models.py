"""The model zoo builders: Caffe2 blob names, output shapes, and a training step that lowers
the loss."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import brew, model_helper, optimizer, workspace
from nbcaffe.models import MODELS, input_shape


def build(name, is_test=True):
    m = model_helper.ModelHelper(name=name.lower())
    out = MODELS[name].build(m, "data", is_test=is_test)
    return m, out


@pytest.mark.parametrize("name", ["MLP", "DeepMLP", "LeNet", "ResNet20", "AlexNet"])
def test_forward_shapes_and_probabilities(name):
    m, out = build(name)
    x = np.random.default_rng(0).random(input_shape(name, 2), dtype=np.float32)
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(m.param_init_net)
    workspace.RunNetOnce(m.net)
    probs = workspace.FetchBlob(out)
    assert probs.shape == (2, MODELS[name].num_labels)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_caffe2_parameter_names():
    m, _ = build("ResNet50")
    names = {str(p) for p in m.params}
    assert {"conv1_w", "conv1_spatbn_relu_s", "conv1_spatbn_relu_b", "comp_0_conv_1_w", "comp_0_spatbn_1_s",
            "shortcut_projection_0_w", "shortcut_projection_0_spatbn_s", "last_out_L1000_w",
            "last_out_L1000_b"} <= names
    assert "conv1_b" not in names  # ResNet convolutions have no bias, as in Caffe2
    computed = {str(p) for p in m.GetComputedParams()}
    assert {"conv1_spatbn_relu_rm", "conv1_spatbn_relu_riv"} <= computed
    assert sum(op.type == "Conv" for op in m.net.Proto().op) == 53  # 49 + 4 shortcut projections
    m, _ = build("LeNet")
    assert [str(p) for p in m.params] == ["conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc3_w", "fc3_b", "pred_w",
                                           "pred_b"]


@pytest.mark.parametrize("name", ["LeNet", "ResNet20"])
def test_training_steps_lower_the_loss(name):
    m = model_helper.ModelHelper(name=f"{name.lower()}_train")
    softmax = MODELS[name].build(m, "data", is_test=False)
    xent = m.net.LabelCrossEntropy([softmax, "label"], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    brew.accuracy(m, [softmax, "label"], "accuracy")
    m.AddGradientOperators([loss])
    optimizer.build_sgd(m, base_learning_rate=0.01, momentum=0.9)  # 0.05 diverged on some inits
    rng = np.random.default_rng(1)
    x = rng.random(input_shape(name, 8), dtype=np.float32)
    y = rng.integers(0, MODELS[name].num_labels, 8).astype(np.int32)
    workspace.FeedBlob("data", x)
    workspace.FeedBlob("label", y)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    losses = []
    for _ in range(6):
        workspace.RunNet(m.net)
        losses.append(float(workspace.FetchBlob("loss")))
    assert losses[-1] < losses[0], losses  # memorising one batch


@pytest.mark.parametrize("data_grad", [False, True])
def test_image_gradient_only_when_asked(data_grad):
    """data_grad=False: the first ConvGradient computes no image gradient; True: it does, and
    the image gradient matches a central difference of the loss."""
    m = model_helper.ModelHelper(name="lenet_grad")
    softmax = MODELS["LeNet"].build(m, "data", data_grad=data_grad)
    xent = m.net.LabelCrossEntropy([softmax, "label"], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    grad_map = m.AddGradientOperators([loss])
    conv1_grad = next(op for op in m.net.Proto().op if op.type == "ConvGradient" and op.input[0] == "data")
    assert ("data_grad" in conv1_grad.output) == data_grad
    assert ("data" in grad_map) == data_grad
    if not data_grad:
        return
    rng = np.random.default_rng(3)
    x = rng.random(input_shape("LeNet", 2)).astype(np.float32)
    workspace.FeedBlob("data", x)
    workspace.FeedBlob("label", np.array([3, 7], np.int32))
    workspace.RunNetOnce(m.param_init_net)
    for param in m.params:  # seeded weights: a fixed case, not a new random net per run
        shape = workspace.FetchBlob(param).shape
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 100
        workspace.FeedBlob(param, (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
    workspace.RunNetOnce(m.net)
    g = workspace.FetchBlob("data_grad").astype(np.float64)
    direction = rng.standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    eps = 1e-2

    def loss_at(xx):
        workspace.FeedBlob("data", xx.astype(np.float32))
        workspace.RunNetOnce(m.net)
        return float(workspace.FetchBlob("loss"))

    numeric = (loss_at(x + eps * direction) - loss_at(x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float((g * direction).sum()), numeric, rtol=5e-2, atol=1e-4)
