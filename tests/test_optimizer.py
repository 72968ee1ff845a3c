"""Optimizers: Caffe2's blob names and wiring, and update numbers checked against NumPy
re-implementations of each rule over several steps."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import brew, core, model_helper, optimizer, workspace
from nbcaffe.proto import caffe2_pb2

RNG = np.random.default_rng(0)
DATA = RNG.standard_normal((8, 5)).astype(np.float32)
LABEL = RNG.integers(0, 3, 8).astype(np.int32)


def mlp(name="opt", device=None):
    """FC(5->4) -> Relu -> FC(4->3) -> SoftmaxWithLoss, gradients added."""
    with core.DeviceScope(device):
        m = model_helper.ModelHelper(name=name)
        h = brew.fc(m, "data", "h", 5, 4)
        h = brew.relu(m, h, h)
        out = brew.fc(m, h, "out", 4, 3)
        _, loss = m.net.SoftmaxWithLoss([out, "label"], ["p", "loss"])
        m.AddGradientOperators([loss])
    return m


def run_steps(m, steps, device=None):
    """Run init once, then `steps` iterations; return per-step (params before, grads)."""
    workspace.FeedBlob("data", DATA, device)
    workspace.FeedBlob("label", LABEL, device)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    history = []
    for _ in range(steps):
        before = {str(p): workspace.FetchBlob(p) for p in m.params}
        workspace.RunNet(m.net)
        grads = {str(p): workspace.FetchBlob(m.param_to_grad[p]) for p in m.params}
        history.append((before, grads))
    after = {str(p): workspace.FetchBlob(p) for p in m.params}
    return history, after


def raw_gradients(params):
    """Gradients of the MLP's loss at ``params`` (no optimizer), in a scratch workspace."""
    with workspace.WorkspaceGuard("_raw_grads_"):
        workspace.ResetWorkspace()
        m = mlp("raw")
        workspace.FeedBlob("data", DATA)
        workspace.FeedBlob("label", LABEL)
        for name, value in params.items():
            workspace.FeedBlob(name, value)
        workspace.RunNetOnce(m.net)
        return {str(p): workspace.FetchBlob(m.param_to_grad[p]).astype(np.float64) for p in m.params}


def arg(op, name):
    return next(a for a in op.arg if a.name == name)


def test_sgd_blob_names_and_plain_update():
    m = mlp()
    optimizer.build_sgd(m, base_learning_rate=0.1)
    init_outputs = [o for op in m.param_init_net.Proto().op for o in op.output]
    assert {"optimizer_iteration", "iteration_mutex", "ONE_0_0"} <= set(init_outputs)
    types = [op.type for op in m.net.Proto().op]
    assert types.count("AtomicIter") == 1 and types.count("LearningRate") == 1 and types.count("WeightedSum") == 4
    lr_op = next(op for op in m.net.Proto().op if op.type == "LearningRate")
    assert list(lr_op.output) == ["SgdOptimizer_0_lr_cpu"] and arg(lr_op, "base_lr").f == pytest.approx(-0.1)
    ws = next(op for op in m.net.Proto().op if op.type == "WeightedSum")
    assert list(ws.input) == ["h_w", "ONE_0_0", "h_w_grad", "SgdOptimizer_0_lr_cpu"] and list(ws.output) == ["h_w"]
    history, after = run_steps(m, 3)
    for (before, grads), nxt in zip(history, [h[0] for h in history[1:]] + [after]):
        for name in before:
            np.testing.assert_allclose(nxt[name], before[name] - 0.1 * grads[name], rtol=1e-6, atol=1e-7)
    assert workspace.FetchBlob("optimizer_iteration")[0] == 3


def test_momentum_sgd_matches_numpy_nesterov_and_plain():
    for nesterov in (0, 1):
        workspace.ResetWorkspace()
        m = mlp(f"mom{nesterov}")
        optimizer.build_sgd(m, base_learning_rate=0.05, momentum=0.9, nesterov=nesterov)
        upd = next(op for op in m.net.Proto().op if op.type == "MomentumSGDUpdate")
        assert list(upd.input) == ["h_w_grad", "h_w_momentum", "SgdOptimizer_0_lr_cpu" if nesterov == 0 else
                                   upd.input[2], "h_w"]
        history, after = run_steps(m, 4)
        moments = {name: np.zeros_like(v, dtype=np.float64) for name, v in history[0][0].items()}
        params = {k: v.astype(np.float64) for k, v in history[0][0].items()}
        for before, _steps in history:  # the grad blobs hold the step after MomentumSGDUpdate
            grads = raw_gradients(before)
            for name in params:
                g, mom = grads[name], moments[name]
                if nesterov:
                    new = 0.9 * mom + 0.05 * g
                    step = 1.9 * new - 0.9 * mom
                else:
                    new = step = 0.05 * g + 0.9 * mom
                moments[name] = new
                params[name] = params[name] - step
        for name in params:
            np.testing.assert_allclose(after[name], params[name], rtol=1e-5, atol=1e-6)


def test_adam_matches_numpy():
    m = mlp("adam")
    optimizer.build_adam(m, base_learning_rate=0.01, beta1=0.8, beta2=0.95, epsilon=1e-6)
    init_outputs = [o for op in m.param_init_net.Proto().op for o in op.output]
    assert "h_w_first_moment" in init_outputs and "h_w_second_moment" in init_outputs
    history, after = run_steps(m, 3)
    params = {k: v.astype(np.float64) for k, v in history[0][0].items()}
    m1 = {k: 0.0 for k in params}
    m2 = {k: 0.0 for k in params}
    for step, (_before, grads) in enumerate(history, start=1):
        t = step + 1  # AtomicIter runs before Adam, so the first update sees iteration 1: t = 2 (as in Caffe2)
        for name in params:
            g = grads[name].astype(np.float64)
            m1[name] = 0.8 * m1[name] + 0.2 * g
            m2[name] = 0.95 * m2[name] + 0.05 * g * g
            corr = np.sqrt(1 - 0.95 ** t) / (1 - 0.8 ** t)
            params[name] = params[name] - 0.01 * corr * m1[name] / (np.sqrt(m2[name]) + 1e-6)
    for name in params:
        np.testing.assert_allclose(after[name], params[name], rtol=1e-5, atol=1e-6)


def test_adagrad_and_rmsprop_match_numpy():
    m = mlp("adagrad")
    optimizer.build_adagrad(m, base_learning_rate=0.1, epsilon=1e-4, decay=0.9)
    history, after = run_steps(m, 3)
    params = {k: v.astype(np.float64) for k, v in history[0][0].items()}
    hist = {k: 0.0 for k in params}
    for _before, grads in history:
        for name in params:
            g = grads[name].astype(np.float64)
            hist[name] = 0.9 * hist[name] + g * g
            params[name] -= 0.1 * g / (np.sqrt(hist[name]) + 1e-4)
    for name in params:
        np.testing.assert_allclose(after[name], params[name], rtol=1e-5, atol=1e-6)

    workspace.ResetWorkspace()
    m = mlp("rms")
    optimizer.build_rms_prop(m, base_learning_rate=0.01, decay=0.9, momentum=0.5, epsilon=1e-5)
    assert "h_w_mean_squares" in [o for op in m.param_init_net.Proto().op for o in op.output]
    history, after = run_steps(m, 3)
    params = {k: v.astype(np.float64) for k, v in history[0][0].items()}
    ms = {k: 0.0 for k in params}
    mom = {k: 0.0 for k in params}
    for before, _steps in history:
        grads = raw_gradients(before)
        for name in params:
            g = grads[name]
            ms[name] = ms[name] + 0.1 * (g * g - ms[name])
            mom[name] = 0.5 * mom[name] - 0.01 * g / np.sqrt(1e-5 + ms[name])
            params[name] += mom[name]
    for name in params:
        np.testing.assert_allclose(after[name], params[name], rtol=1e-4, atol=1e-6)


def test_rmsprop_step_rule():
    """One RmsProp op checked directly (the net test above only sees the step it wrote)."""
    g = DATA[:2].copy()
    ms = np.abs(DATA[2:4]).copy()
    mom = DATA[4:6].copy()
    lr = np.array([-0.01], np.float32)
    for name, value in (("g", g), ("ms", ms), ("mom", mom), ("lr", lr)):
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator("RmsProp", ["g", "ms", "mom", "lr"], ["g", "ms", "mom"],
                                                  decay=0.9, momentum=0.5, epsilon=1e-5))
    new_ms = ms + 0.1 * (g * g - ms)
    new_mom = 0.5 * mom - 0.01 * g / np.sqrt(1e-5 + new_ms)
    np.testing.assert_allclose(workspace.FetchBlob("ms"), new_ms, rtol=1e-5)
    np.testing.assert_allclose(workspace.FetchBlob("mom"), new_mom, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(workspace.FetchBlob("g"), new_mom, rtol=1e-5, atol=1e-7)


def test_weight_decay_only_touches_weights():
    m = mlp("wd")
    optimizer.add_weight_decay(m, 0.01)
    wd_ops = [op for op in m.net.Proto().op if op.type == "WeightedSum"]
    assert [list(op.input) for op in wd_ops] == [["h_w_grad", "ONE_0_0", "h_w", "wd_0_0"],
                                                 ["out_w_grad", "ONE_0_0", "out_w", "wd_0_0"]]
    workspace.FeedBlob("data", DATA)
    workspace.FeedBlob("label", LABEL)
    workspace.RunNetOnce(m.param_init_net)
    plain = mlp("plain")
    workspace.RunNetOnce(m.net)
    decayed = workspace.FetchBlob("h_w_grad")
    workspace.RunNetOnce(plain.net)
    np.testing.assert_allclose(decayed, workspace.FetchBlob("h_w_grad") + 0.01 * workspace.FetchBlob("h_w"),
                               rtol=1e-5, atol=1e-7)


def test_max_gradient_norm_scales_the_learning_rate():
    m = mlp("clip")
    optimizer.build_sgd(m, base_learning_rate=0.1, max_gradient_norm=0.01)
    history, after = run_steps(m, 1)
    before, grads = history[0]
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert norm > 0.01  # the clip is active
    ratio = 0.01 / max(norm, 0.01)
    for name in before:
        np.testing.assert_allclose(after[name], before[name] - 0.1 * ratio * grads[name], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(workspace.FetchBlob("norm_clipped_grad_update/norm_ratio"), ratio, rtol=1e-5)


def test_step_policy_schedule_through_build_sgd():
    m = mlp("sched")
    optimizer.build_sgd(m, base_learning_rate=0.5, policy="step", stepsize=2, gamma=0.5)
    workspace.FeedBlob("data", DATA)
    workspace.FeedBlob("label", LABEL)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    rates = []
    for _ in range(5):
        workspace.RunNet(m.net)
        rates.append(float(workspace.FetchBlob("SgdOptimizer_0_lr_cpu")))
    # AtomicIter runs first, so the k-th run sees iteration k
    np.testing.assert_allclose(rates, [-0.5 * 0.5 ** (k // 2) for k in range(1, 6)], rtol=1e-6)


def test_optimizer_needs_gradients_first():
    m = model_helper.ModelHelper(name="nograd")
    brew.fc(m, "data", "fc", 2, 2)
    with pytest.raises(RuntimeError, match="AddGradientOperators"):
        optimizer.build_sgd(m, 0.1)


@pytest.mark.cuda
def test_sgd_momentum_training_on_cuda_matches_cpu():
    results = []
    for device in (core.DeviceOption(caffe2_pb2.CPU), core.DeviceOption(caffe2_pb2.CUDA, 0)):
        workspace.ResetWorkspace()
        m = mlp("dev", device)
        with core.DeviceScope(device):
            optimizer.build_sgd(m, base_learning_rate=0.1, momentum=0.9)
        workspace.FeedBlob("data", DATA, device)
        workspace.FeedBlob("label", LABEL, device)
        workspace.RunNetOnce(m.param_init_net)
        for p in m.params:  # identical starting weights on both devices
            shape = workspace.FetchBlob(p).shape
            start = 0.1 * (1 + np.arange(np.prod(shape)).reshape(shape) % 3) * (-1) ** np.arange(shape[-1])
            workspace.FeedBlob(p, start.astype(np.float32), device)
        workspace.CreateNet(m.net)
        workspace.RunNet(m.net, 2)
        results.append([workspace.FetchBlob(p) for p in m.params] + [workspace.FetchBlob("loss")])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
