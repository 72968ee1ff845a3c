"""A training run stopped, saved, reloaded in a fresh workspace and continued ends with
bit-identical parameters (and optimizer state) to an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import brew, core, model_helper, optimizer, workspace

STEPS = 12
RNG = np.random.default_rng(7)
XS = RNG.standard_normal((STEPS, 16, 6)).astype(np.float32)
YS = RNG.integers(0, 3, (STEPS, 16)).astype(np.int32)


def build(build_optimizer):
    core.Net._net_names_used.clear()
    optimizer._optimizer_instance_count.clear()
    m = model_helper.ModelHelper(name="resume")
    h = brew.fc(m, "data", "h", 6, 5)
    h = brew.tanh(m, h, "h_act")
    out = brew.fc(m, h, "out", 5, 3)
    _, loss = m.net.SoftmaxWithLoss([out, "label"], ["p", "loss"])
    m.AddGradientOperators([loss])
    build_optimizer(m)
    m.param_init_net.set_rand_seed(1234)  # both runs start from the same weights
    return m


def state_blobs(m):
    """Everything the init net creates (parameters, optimizer state, the iteration counter),
    except the mutex, which is recreated by the init net."""
    names = [o for op in m.param_init_net.Proto().op for o in op.output]
    return [n for n in dict.fromkeys(names) if n != "iteration_mutex"]  # SGD fills ONE_0_0 once per param


def run(m, steps):
    for step in steps:
        workspace.FeedBlob("data", XS[step])
        workspace.FeedBlob("label", YS[step])
        workspace.RunNet(m.net)


def start(m):
    workspace.FeedBlob("data", XS[0])
    workspace.FeedBlob("label", YS[0])
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)


OPTIMIZERS = {
    "momentum_sgd": lambda m: optimizer.build_sgd(m, 0.1, momentum=0.9, policy="step", stepsize=3, gamma=0.7),
    "adam": lambda m: optimizer.build_adam(m, 0.01),
    "adagrad": lambda m: optimizer.build_adagrad(m, 0.05),
}


@pytest.mark.parametrize("db_type", ["minidb", "lmdb"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_is_bit_identical(tmp_path, name, db_type):
    if db_type == "lmdb":
        pytest.importorskip("lmdb")
    # uninterrupted
    workspace.ResetWorkspace(str(tmp_path))
    m = build(OPTIMIZERS[name])
    start(m)
    run(m, range(STEPS))
    blobs = state_blobs(m)
    expected = {b: workspace.FetchBlob(b) for b in blobs}

    # stopped half way and checkpointed
    workspace.ResetWorkspace(str(tmp_path))
    m = build(OPTIMIZERS[name])
    start(m)
    run(m, range(STEPS // 2))
    workspace.RunOperatorOnce(core.CreateOperator("Save", blobs, [], db="ckpt", db_type=db_type))
    half = {b: workspace.FetchBlob(b) for b in blobs}

    # a fresh workspace: init, overwrite from the checkpoint, continue
    workspace.SwitchWorkspace("resumed", True)
    workspace.ResetWorkspace(str(tmp_path))
    m = build(OPTIMIZERS[name])
    start(m)
    workspace.RunOperatorOnce(core.CreateOperator("Load", [], blobs, db="ckpt", db_type=db_type))
    for b in blobs:
        np.testing.assert_array_equal(workspace.FetchBlob(b), half[b])
    run(m, range(STEPS // 2, STEPS))
    for b in blobs:
        got = workspace.FetchBlob(b)
        assert got.dtype == expected[b].dtype and np.array_equal(got, expected[b]), f"{b} differs after resume"
    assert workspace.FetchBlob("optimizer_iteration")[0] == STEPS
