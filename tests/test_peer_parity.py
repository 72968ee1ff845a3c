"""Numerical parity with PyTorch: the same MLP, the same initial weights and batches, 20 steps
of SGD with momentum — losses and final parameters agree to 1e-5 relative.  Skipped when
PyTorch (the `peer` test extra) is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import brew, model_helper, optimizer, workspace

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[peer]')")

STEPS, BATCH, D_IN, HIDDEN, CLASSES = 20, 16, 12, 10, 4


def data():
    rng = np.random.default_rng(42)
    xs = rng.standard_normal((STEPS, BATCH, D_IN)).astype(np.float32)
    ys = rng.integers(0, CLASSES, (STEPS, BATCH)).astype(np.int32)
    weights = {"fc1_w": (rng.standard_normal((HIDDEN, D_IN)) * 0.3).astype(np.float32),
               "fc1_b": (rng.standard_normal(HIDDEN) * 0.1).astype(np.float32),
               "fc2_w": (rng.standard_normal((CLASSES, HIDDEN)) * 0.3).astype(np.float32),
               "fc2_b": (rng.standard_normal(CLASSES) * 0.1).astype(np.float32)}
    return xs, ys, weights


def train_nbcaffe(xs, ys, weights, lr, momentum):
    m = model_helper.ModelHelper(name="parity")
    h = brew.fc(m, "data", "fc1", D_IN, HIDDEN)
    h = brew.relu(m, h, h)
    out = brew.fc(m, h, "fc2", HIDDEN, CLASSES)
    _, loss = m.net.SoftmaxWithLoss([out, "label"], ["softmax", "loss"])
    m.AddGradientOperators([loss])
    optimizer.build_sgd(m, base_learning_rate=lr, momentum=momentum, nesterov=False)
    workspace.FeedBlob("data", xs[0])
    workspace.FeedBlob("label", ys[0])
    workspace.RunNetOnce(m.param_init_net)
    for name, value in weights.items():
        workspace.FeedBlob(name, value)
    workspace.CreateNet(m.net)
    losses = []
    for x, y in zip(xs, ys):
        workspace.FeedBlob("data", x)
        workspace.FeedBlob("label", y)
        workspace.RunNet(m.net)
        losses.append(float(workspace.FetchBlob("loss")))
    return np.array(losses), {name: workspace.FetchBlob(name) for name in weights}


def train_torch(xs, ys, weights, lr, momentum):
    torch.manual_seed(0)
    fc1 = torch.nn.Linear(D_IN, HIDDEN)
    fc2 = torch.nn.Linear(HIDDEN, CLASSES)
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(weights["fc1_w"]))
        fc1.bias.copy_(torch.from_numpy(weights["fc1_b"]))
        fc2.weight.copy_(torch.from_numpy(weights["fc2_w"]))
        fc2.bias.copy_(torch.from_numpy(weights["fc2_b"]))
    params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias]
    # Caffe2's momentum m = lr * (torch's buffer) when lr is constant, so the updates coincide.
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=False)
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        logits = fc2(torch.relu(fc1(torch.from_numpy(x))))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y.astype(np.int64)))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    final = {"fc1_w": fc1.weight, "fc1_b": fc1.bias, "fc2_w": fc2.weight, "fc2_b": fc2.bias}
    return np.array(losses), {k: v.detach().numpy().copy() for k, v in final.items()}


def test_mlp_sgd_momentum_matches_pytorch():
    torch.set_num_threads(1)
    xs, ys, weights = data()
    ours_loss, ours_params = train_nbcaffe(xs, ys, weights, lr=0.1, momentum=0.9)
    torch_loss, torch_params = train_torch(xs, ys, weights, lr=0.1, momentum=0.9)
    assert ours_loss[-1] < ours_loss[0]  # it trains
    np.testing.assert_allclose(ours_loss, torch_loss, rtol=1e-5)
    for name in weights:
        np.testing.assert_allclose(ours_params[name], torch_params[name], rtol=1e-5, atol=1e-6, err_msg=name)
