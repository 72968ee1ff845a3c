"""data_parallel_model in one process: N CPU replicas with per-replica batch B train to the
parameters of one model on the whole batch; checkpoints resume bit-identically; the API around
Parallelize (checkpoint blobs, learning-rate names, predictor extraction, blob sync, computed
params, shared model); GPU replicas under the CUDA simulator."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import brew, core, errors, model_helper, optimizer, workspace
from nbcaffe import data_parallel_model as dpm
from nbcaffe.devices import CPU, CUDA, DeviceOption
from tests import _dp_common as c

B, K = 4, 4


@pytest.fixture(autouse=True)
def _fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def train_both(name, devices, shared_model=False, steps=K):
    xs, ys = c.batches(name, steps, len(devices) * B)
    init = c.initial_params(name)
    ref = c.train_reference(name, xs, ys, init)
    workspace.ResetWorkspace()
    m = c.build_parallel(name, devices, shared_model=shared_model)
    c.start_parallel(m, xs[0], ys[0], init)
    c.train_parallel(m, xs, ys)
    return m, init, ref


@pytest.mark.parametrize("name,devices", [("MLP", [0, 1]), ("MLP", [0, 1, 2]), ("LeNet", [0, 1]), ("LeNet", [2, 5])])
def test_replicas_match_one_model_on_the_whole_batch(name, devices):
    m, init, ref = train_both(name, devices)
    assert max(float(np.max(np.abs(ref[k] - init[k]))) for k in ref) > 1e-2  # it trained
    for d in devices:
        assert c.max_relative_error(c.replica_params(m, init, d), ref) < 1e-5


def test_shared_model_updates_one_copy_of_the_parameters():
    m, init, ref = train_both("MLP", [0, 1], shared_model=True)
    assert c.max_relative_error(c.replica_params(m, init, 0), ref) < 1e-5
    assert not any(str(p).startswith("cpu_1/") for p in m.params)
    assert not any(o.startswith("cpu_1/fc1_w") for op in m.param_init_net.Proto().op for o in op.output)


def test_structure_and_loss_scale():
    m = c.build_parallel("MLP", [0, 1, 2])
    ops = m.net.Proto().op
    scales = {op.output[0]: [a.f for a in op.arg if a.name == "scale"][0]
              for op in ops if op.type == "Scale" and op.output[0].endswith("loss_scaled")}
    assert scales == {f"cpu_{d}/loss_scaled": pytest.approx(1 / 3) for d in range(3)}
    sums = [op for op in ops if op.type == "Sum" and op.name == "dpm"]
    assert [s.output[0] for s in sums] == ["cpu_0/fc1_b_grad", "cpu_0/fc1_w_grad"]  # reverse order
    assert {op.device_option.device_id for op in ops if op.type == "MomentumSGDUpdate"} == {0, 1, 2}
    assert dpm.GetDevices(m) == [0, 1, 2]
    assert dpm.GetLearningRateBlobNames(m) == ["SgdOptimizer_0_lr_cpu"]
    assert sorted(map(str, dpm.GetCheckpointParams(m))) == [
        "cpu_0/fc1_b", "cpu_0/fc1_b_momentum", "cpu_0/fc1_w", "cpu_0/fc1_w_momentum", "optimizer_iteration"]


def test_checkpoint_and_resume_in_one_process_is_bit_identical(tmp_path):
    name, steps, devices = "LeNet", 6, [0, 1]
    xs, ys = c.batches(name, steps, 2 * B)
    init = c.initial_params(name)

    def state(m):
        return {str(b): workspace.FetchBlob(str(b)) for b in dpm.GetCheckpointParams(m)}

    m = c.build_parallel(name, devices)
    c.start_parallel(m, xs[0], ys[0], init)
    c.train_parallel(m, xs, ys)
    expected = state(m)

    workspace.ResetWorkspace()
    m = c.build_parallel(name, devices)
    c.start_parallel(m, xs[0], ys[0], init)
    c.train_parallel(m, xs[:3], ys[:3])
    blobs = sorted(str(b) for b in dpm.GetCheckpointParams(m))
    path = str(tmp_path / "ckpt.minidb")
    workspace.RunOperatorOnce(core.CreateOperator("Save", blobs, [], db=path, db_type="minidb"))

    workspace.ResetWorkspace()
    m = c.build_parallel(name, devices)
    c.feed_shards(m, xs[3], ys[3])
    dpm.RunInitNet(m)
    workspace.RunOperatorOnce(core.CreateOperator("Load", [], blobs, db=path, db_type="minidb"))
    dpm.FinalizeAfterCheckpoint(m)
    c.train_parallel(m, xs[3:], ys[3:])
    got = state(m)
    assert set(got) == set(expected) and len(got) == 17
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k
        if k.startswith("cpu_0/"):
            assert np.array_equal(workspace.FetchBlob(k.replace("cpu_0/", "cpu_1/")), expected[k])


def _bn_model(devices, broadcast=True):
    c.fresh()
    m = model_helper.ModelHelper(name="bn")

    def forward(model, loss_scale):
        h = brew.conv(model, "data", "conv", 2, 3, kernel=3, pad=1)
        h = brew.spatial_bn(model, h, "bn", 3, is_test=0)
        h = brew.fc(model, h, "fc", 3 * 4 * 4, 5)
        probs = brew.softmax(model, h, "probs")
        xent = model.net.LabelCrossEntropy([probs, "label"], "xent")
        return [model.net.Scale(model.net.AveragedLoss(xent, "loss"), "loss_scaled", scale=loss_scale)]

    dpm.Parallelize(m, lambda model: None, forward, optimizer_builder_fun=lambda model: optimizer.build_sgd(model, 0.1),
                    devices=devices, cpu_device=True, broadcast_computed_params=broadcast)
    rng = np.random.default_rng(0)
    for d in devices:
        workspace.FeedBlob(f"cpu_{d}/data", rng.standard_normal((3, 2, 4, 4)).astype(np.float32) + d)
        workspace.FeedBlob(f"cpu_{d}/label", rng.integers(0, 5, 3).astype(np.int32))
    dpm.RunInitNet(m)
    dpm.RunNet(m, 2)
    return m


def test_running_statistics_follow_the_first_replica():
    m = _bn_model([0, 1])
    assert set(m._computed_param_names) == {"bn_rm", "bn_riv"}
    for blob in ("bn_rm", "bn_riv"):
        first = workspace.FetchBlob(f"cpu_0/{blob}")
        assert np.array_equal(workspace.FetchBlob(f"cpu_1/{blob}"), first) and np.any(first != (blob == "bn_riv"))
    assert np.array_equal(workspace.FetchBlob("cpu_0/bn_s"), workspace.FetchBlob("cpu_1/bn_s"))
    workspace.ResetWorkspace()
    _bn_model([0, 1], broadcast=False)  # each replica keeps its own statistics
    assert not np.array_equal(workspace.FetchBlob("cpu_0/bn_rm"), workspace.FetchBlob("cpu_1/bn_rm"))


def test_extract_predictor_net_of_a_test_model():
    train = c.build_parallel("LeNet", [0, 1])
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    c.feed_shards(train, np.concatenate([x, x]), np.zeros(4, np.int32))
    dpm.RunInitNet(train)
    test = model_helper.ModelHelper(name="test", init_params=False)
    from nbcaffe.models import lenet

    dpm.Parallelize(test, lambda model: None, lambda model, loss_scale: [lenet.lenet(model, "data", True)],
                    devices=[0, 1], cpu_device=True)
    net, params = dpm.ExtractPredictorNet(test, ["data"], ["softmax"], DeviceOption(CPU))
    assert sorted(params) == sorted(f"cpu_0/{p}" for p in ("conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc3_w",
                                                            "fc3_b", "pred_w", "pred_b"))
    assert {op.type for op in net.Proto().op} == {"Conv", "MaxPool", "FC", "Relu", "Softmax"}
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(net)
    workspace.RunNetOnce(test.net)
    np.testing.assert_allclose(workspace.FetchBlob("softmax"), workspace.FetchBlob("cpu_0/softmax"), rtol=1e-6)


def test_convert_net_for_device_and_blob_sync():
    net = core.Net("side")
    net.Scale("x", "y", scale=2.0)
    moved = dpm.ConvertNetForDevice(net, DeviceOption(CPU, 1))
    assert list(moved.Proto().op[0].input) == ["cpu_1/x"] and moved.Proto().op[0].device_option.device_id == 1
    m = c.build_parallel("MLP", [0, 1])
    dpm.AddBlobSync(m, ["counter"])
    workspace.FeedBlob("cpu_0/counter", np.array([5.0], np.float32))
    workspace.FeedBlob("cpu_1/counter", np.array([0.0], np.float32))
    c.start_parallel(m, *[a[0] for a in c.batches("MLP", 1, 2 * B)], c.initial_params("MLP"))
    dpm.RunNet(m, 1)
    assert workspace.FetchBlob("cpu_1/counter")[0] == 5.0
    with pytest.raises(errors.ArgumentError, match="unscoped"):
        dpm.AddBlobSync(m, ["cpu_0/counter"])


def test_misuse_is_reported():
    c.fresh()
    m = model_helper.ModelHelper(name="bad")
    brew.fc(m, "data", "outside", 4, 2)  # a parameter made before Parallelize stays out of it
    with pytest.raises(errors.ArgumentError, match="not both"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: [], param_update_builder_fun=lambda model: None,
                        optimizer_builder_fun=lambda model: None, cpu_device=True, devices=[0])
    with pytest.raises(errors.ArgumentError, match="shared_model"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: [], shared_model=True, devices=[0])
    with pytest.raises(NotImplementedError, match="use_nccl"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: [], use_nccl=True, devices=[0])
    with pytest.raises(errors.ArgumentError, match="distinct"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: [], cpu_device=True, devices=[0, 0])
    with pytest.raises(errors.NbcaffeError, match="list of loss"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: "loss", cpu_device=True, devices=[0],
                        optimizer_builder_fun=lambda model: None)
    with pytest.raises(errors.ArgumentError, match="shard_id"):
        dpm.Parallelize(m, lambda model: None, lambda model, s: [], cpu_device=True, devices=[0],
                        rendezvous={"num_shards": 2})


def test_one_shard_rendezvous_runs_in_process():
    rendezvous = {"kv_handler": None, "shard_id": 0, "num_shards": 1, "engine": "GLOO"}
    m = c.build_parallel("MLP", [0, 1], rendezvous=rendezvous)
    assert not any(op.type == "Allreduce" for op in m.net.Proto().op)


@pytest.mark.cuda
def test_two_gpu_replicas_under_the_simulator(monkeypatch):
    """The simulator has one device; nbcaffe's CUDA context does not select devices, so two
    GPU ids run on it.  That exercises the GPU graph (per-GPU ops, copies to GPU 0, sums,
    copies back, one learning rate per GPU) without two real GPUs."""
    import nbcaffe.cuda as nbcuda

    monkeypatch.setattr(nbcuda, "device_count", lambda: 2)
    name, n, b, steps = "MLP", 2, 2, 2
    xs, ys = c.batches(name, steps, n * b)
    init = c.initial_params(name)
    ref = c.train_reference(name, xs, ys, init)
    workspace.ResetWorkspace()
    c.fresh()
    m = model_helper.ModelHelper(name="dp_gpu")
    dpm.Parallelize(m, lambda model: None, lambda model, s: [c._loss(model, name, s)], optimizer_builder_fun=c._sgd,
                    devices=[0, 1])
    assert dpm.GetLearningRateBlobNames(m) == ["SgdOptimizer_0_lr_gpu0", "SgdOptimizer_0_lr_gpu1"]

    def feed(x, y):
        for k in range(n):
            gpu = DeviceOption(CUDA, k)
            workspace.FeedBlob(f"gpu_{k}/data", x[k * b:(k + 1) * b], device_option=gpu)
            workspace.FeedBlob(f"gpu_{k}/label", y[k * b:(k + 1) * b], device_option=gpu)

    feed(xs[0], ys[0])
    dpm.RunInitNet(m)
    for p, v in init.items():
        workspace.FeedBlob(f"gpu_0/{p}", v, device_option=DeviceOption(CUDA, 0))
    dpm.FinalizeAfterCheckpoint(m)
    for x, y in zip(xs, ys):
        feed(x, y)
        dpm.RunNet(m, 1)
    for d in range(n):
        got = {p: workspace.FetchBlob(f"gpu_{d}/{p}") for p in init}
        assert c.max_relative_error(got, ref) < 1e-5


def test_param_update_builder_runs_once_per_replica_in_its_scopes():
    c.fresh()
    m = model_helper.ModelHelper(name="dp_manual")
    seen = []

    def update(model):
        seen.append(core.ScopedName("x"))
        lr = model.param_init_net.ConstantFill([], "lr", shape=[1], value=-0.1)
        one = model.param_init_net.ConstantFill([], "one", shape=[1], value=1.0)
        for p in model.GetParams():  # this replica's parameters (the current name scope)
            model.net.WeightedSum([p, one, model.param_to_grad[p], lr], p)

    dpm.Parallelize(m, lambda model: None, lambda model, s: [c._loss(model, "MLP", s)],
                    param_update_builder_fun=update, devices=[0, 1], cpu_device=True)
    assert seen == ["cpu_0/x", "cpu_1/x"]
    xs, ys = c.batches("MLP", 3, 2 * B)
    c.start_parallel(m, xs[0], ys[0], c.initial_params("MLP"))
    before = workspace.FetchBlob("cpu_1/fc1_w")
    c.train_parallel(m, xs, ys)
    after0, after1 = workspace.FetchBlob("cpu_0/fc1_w"), workspace.FetchBlob("cpu_1/fc1_w")
    assert np.array_equal(after0, after1) and not np.array_equal(after1, before)
    assert dpm.GetLearningRateBlobNames(m) == []  # no LearningRate op, no optimizer object
