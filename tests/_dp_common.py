"""Shared by the data-parallel tests (one process and under mpiexec): zoo models trained with
momentum SGD through data_parallel_model, and the same model trained on the whole batch."""

from __future__ import annotations

import numpy as np

from nbcaffe import core, model_helper, optimizer, workspace
from nbcaffe import data_parallel_model as dpm
from nbcaffe.devices import DeviceOption
from nbcaffe.models import MODELS, input_shape

LR, MOMENTUM = 0.05, 0.9


def fresh():
    """Net and optimizer names restart, so every build names its blobs the same way."""
    core.Net._net_names_used.clear()
    optimizer._optimizer_instance_count.clear()


def _loss(model, name, scale):
    probs = MODELS[name].build(model, "data", False)
    xent = model.net.LabelCrossEntropy([probs, "label"], "xent")
    loss = model.net.AveragedLoss(xent, "loss")
    return model.net.Scale(loss, "loss_scaled", scale=scale) if scale != 1.0 else loss


def _sgd(model):
    return optimizer.build_sgd(model, LR, momentum=MOMENTUM, policy="step", stepsize=2, gamma=0.9)


def build_reference(name):
    """One model, no replicas: trained on the global batch."""
    fresh()
    m = model_helper.ModelHelper(name="ref")
    loss = _loss(m, name, 1.0)
    m.AddGradientOperators([loss])
    _sgd(m)
    return m


def build_parallel(name, devices, rendezvous=None, shared_model=False, cpu_device=True):
    fresh()
    m = model_helper.ModelHelper(name="dp")
    dpm.Parallelize(m, input_builder_fun=lambda model: None,
                    forward_pass_builder_fun=lambda model, loss_scale: [_loss(model, name, loss_scale)],
                    optimizer_builder_fun=_sgd, devices=devices, cpu_device=cpu_device, rendezvous=rendezvous,
                    shared_model=shared_model)
    return m


def _replica(m, device):
    """(name prefix, DeviceOption) of a replica."""
    return f"{m._device_prefix}_{device}/", DeviceOption(m._device_type, device)


def batches(name, steps, global_batch, seed=3):
    rng = np.random.default_rng(seed)
    shape = input_shape(name, global_batch)
    xs = rng.standard_normal((steps,) + shape).astype(np.float32)
    ys = rng.integers(0, MODELS[name].num_labels, (steps, global_batch)).astype(np.int32)
    return xs, ys


def initial_params(name, seed=11):
    """Deterministic starting values of the model's parameters (the same in every process)."""
    fresh()
    m = model_helper.ModelHelper(name="init")
    _loss(m, name, 1.0)
    rng = np.random.default_rng(seed)
    with workspace.temp_workspace("_dp_init"):
        workspace.RunNetOnce(m.param_init_net)
        return {str(p): (0.1 * rng.standard_normal(workspace.FetchBlob(str(p)).shape)).astype(np.float32)
                for p in m.params}


def train_reference(name, xs, ys, init):
    m = build_reference(name)
    workspace.RunNetOnce(m.param_init_net)
    for p, v in init.items():
        workspace.FeedBlob(p, v)
    workspace.FeedBlob("data", xs[0])
    workspace.FeedBlob("label", ys[0])
    workspace.CreateNet(m.net)
    for x, y in zip(xs, ys):
        workspace.FeedBlob("data", x)
        workspace.FeedBlob("label", y)
        workspace.RunNet(m.net)
    return {p: workspace.FetchBlob(p) for p in init}


def feed_shards(m, x, y, shard=0, num_shards=1):
    """Replica d of process `shard` gets its slice of the global batch."""
    devices = dpm.GetDevices(m)
    parts = len(devices) * num_shards
    per = x.shape[0] // parts
    for k, d in enumerate(devices):
        start = (shard * len(devices) + k) * per
        prefix, option = _replica(m, d)
        workspace.FeedBlob(prefix + "data", x[start:start + per], device_option=option)
        workspace.FeedBlob(prefix + "label", y[start:start + per], device_option=option)


def start_parallel(m, x, y, init, shard=0, num_shards=1):
    """Feed the first batch, init (with the given parameters in replica 0), create the nets."""
    feed_shards(m, x, y, shard, num_shards)
    dpm.RunInitNet(m)
    prefix, option = _replica(m, dpm.GetDevices(m)[0])
    for p, v in init.items():
        workspace.FeedBlob(prefix + p, v, device_option=option)
    dpm.FinalizeAfterCheckpoint(m)


def train_parallel(m, xs, ys, shard=0, num_shards=1, steps=None):
    for x, y in list(zip(xs, ys))[: steps]:
        feed_shards(m, x, y, shard, num_shards)
        dpm.RunNet(m, 1)


def replica_params(m, init, device):
    prefix, _ = _replica(m, device)
    return {p: workspace.FetchBlob(prefix + p) for p in init}


def max_relative_error(a, b):
    """max |a - b| / max |b| over every parameter (the worst one)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-12)) for k in b)
