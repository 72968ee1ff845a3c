"""Synchronous data-parallel training across devices, processes and hosts (Caffe2's
``data_parallel_model``).

:func:`Parallelize` builds one replica of the model per device under the name scope
``gpu_<id>/`` (or ``cpu_<id>/`` with ``cpu_device=True``) and that device's DeviceScope, passing
the forward builder ``loss_scale = 1 / (devices x processes)``.  It then adds the backward pass,
sums every gradient over all replicas (Sum + Copy inside a process; one ``Allreduce`` over the
local replicas and all processes when ``rendezvous`` names more than one shard), the optimizer,
and a broadcast of the first replica's (of process 0) parameters after initialisation.  Each
replica therefore takes the same step as one model trained on the whole batch.

Typical use (``mpiexec -n 2 python train.py``; without mpiexec the same script runs one process)::

    from nbcaffe import data_parallel_model as dpm, distributed

    dpm.Parallelize(model, input_builder_fun=add_input, forward_pass_builder_fun=add_model,
                    optimizer_builder_fun=add_optimizer, devices=[0], cpu_device=True,
                    rendezvous=distributed.mpi_rendezvous())
    dpm.RunInitNet(model)
    for _ in range(steps):
        dpm.RunNet(model, 1)

See docs/data-parallel.md for the design, the failure model and the scaling figures.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from nbcaffe import core, errors, model_helper, scope, threads, workspace
from nbcaffe.data_parallel_model import _graph
from nbcaffe.data_parallel_model._graph import strip_blob_name
from nbcaffe.data_parallel_model._predictor import convert_net_for_device, extract_predictor_net
from nbcaffe.devices import CPU, CUDA, DeviceOption

log = logging.getLogger("nbcaffe")

_DEFAULT_BARRIER_NET_TIMEOUT_SEC = 300
stripBlobName = strip_blob_name  # Caffe2's name


def Parallelize_GPU(*args, **kwargs):
    kwargs["cpu_device"] = False
    return Parallelize(*args, **kwargs)


def Parallelize_CPU(*args, **kwargs):
    kwargs["cpu_device"] = True
    return Parallelize(*args, **kwargs)


def _default_devices(cpu_device):
    if cpu_device:
        return list(range(os.cpu_count() or 1))
    from nbcaffe import dispatch

    return list(range(dispatch.load_cuda().device_count()))


def _check_rendezvous(rendezvous):
    if rendezvous is None:
        return
    missing = {"shard_id", "num_shards"} - set(rendezvous)
    if missing:
        raise errors.ArgumentError(f"Parallelize: rendezvous needs the keys {sorted(missing)} (see"
                                   f" nbcaffe.distributed.mpi_rendezvous())")
    if not 0 <= rendezvous["shard_id"] < rendezvous["num_shards"]:
        raise errors.ArgumentError(f"Parallelize: rendezvous shard_id {rendezvous['shard_id']} is not in"
                                   f" [0, num_shards={rendezvous['num_shards']})")


def Parallelize(model, input_builder_fun, forward_pass_builder_fun, param_update_builder_fun=None,
                optimizer_builder_fun=None, post_sync_builder_fun=None, pre_grad_net_transformer_fun=None,
                net_transformer_fun=None, devices=None, rendezvous=None, net_type="dag",
                broadcast_computed_params=True, optimize_gradient_memory=False, dynamic_memory_management=False,
                blobs_to_keep=None, use_nccl=False, max_concurrent_distributed_ops=16, cpu_device=False,
                ideep=False, num_threads_per_device=4, shared_model=False, combine_spatial_bn=False,
                barrier_net_timeout_sec=None):
    """Replicate ``model`` over ``devices`` (and over the processes of ``rendezvous``).

    Args:
        input_builder_fun(model): adds each replica's input ops (called inside its scopes).
        forward_pass_builder_fun(model, loss_scale): adds the replica's network and returns its
            list of loss blobs; scale the loss by ``loss_scale`` so that the summed gradient is
            the gradient of the mean over the global batch.
        optimizer_builder_fun(model): adds the optimizer once (e.g. ``optimizer.build_sgd``);
            the update ops land on each parameter's device.  Or ``param_update_builder_fun``,
            called once per replica inside its scopes.  Without either, only the forward pass
            is built (a test model: create it with ``ModelHelper(init_params=False)``).
        devices: replica ids (default: every GPU, or every core with ``cpu_device``).
        rendezvous: None for one process, else ``{"shard_id", "num_shards", ...}`` as made by
            :func:`nbcaffe.distributed.mpi_rendezvous` (Caffe2's ``kv_handler``, ``engine``,
            ``transport``, ``interface`` and ``mpi_rendezvous`` keys are accepted; MPI does the
            rendezvous).  ``timeout_sec`` bounds every collective.
        broadcast_computed_params: copy the first replica's computed params (SpatialBN running
            statistics) to the others (and from process 0) after every step.
        shared_model: CPU only; replicas read the first replica's parameters (no copies).
        barrier_net_timeout_sec: deadline of the barrier each ``RunNet`` starts with when
            distributed (default: the rendezvous's ``timeout_sec``, else 300 s as in Caffe2).

    ``net_type``, ``num_threads_per_device`` and ``max_concurrent_distributed_ops`` configured
    Caffe2's threaded executors and are recorded only (nbcaffe runs ops in order; each op uses
    the CPU thread pool).  ``use_nccl``/``ideep``/``combine_spatial_bn``/
    ``dynamic_memory_management`` are not supported and raise; ``optimize_gradient_memory``
    is accepted and does nothing (no memonger yet).
    """
    current = scope.CurrentDeviceScope()
    if current is not None and current.device_type != CPU:
        raise errors.NbcaffeError(f"Parallelize must be called without a device scope, got {current}")
    if not isinstance(model, model_helper.ModelHelper):
        raise TypeError(f"Parallelize takes a ModelHelper, got {type(model).__name__}")
    for flag, value in (("use_nccl", use_nccl), ("ideep", ideep), ("combine_spatial_bn", combine_spatial_bn),
                        ("dynamic_memory_management", dynamic_memory_management)):
        if value:
            raise NotImplementedError(f"Parallelize: {flag}=True is not supported by nbcaffe")
    if shared_model and not cpu_device:
        raise errors.ArgumentError("Parallelize: shared_model is only supported with cpu_device=True (as in Caffe2)")
    if optimize_gradient_memory:
        log.warning("Parallelize: optimize_gradient_memory is not implemented (no memonger); ignored")
    if param_update_builder_fun is not None and optimizer_builder_fun is not None:
        raise errors.ArgumentError("Parallelize: give param_update_builder_fun or optimizer_builder_fun, not both")
    _check_rendezvous(rendezvous)
    devices = list(devices) if devices is not None else _default_devices(cpu_device)
    if not devices or len(set(devices)) != len(devices):
        raise errors.ArgumentError(f"Parallelize: devices must be distinct ids, got {devices}")

    model._device_type = CPU if cpu_device else CUDA
    model._device_prefix = "cpu" if cpu_device else "gpu"
    model._shared_model = bool(shared_model)
    model._devices = devices
    model._rendezvous = rendezvous
    model._optimizer = None
    model._grad_names = []
    model._sync_barrier_net = None
    num_shards = 1 if rendezvous is None else int(rendezvous["num_shards"])
    model._distributed = num_shards > 1
    workers = len(devices) * num_threads_per_device + (8 if model._distributed else 0)
    model.net.Proto().num_workers = workers
    model.net.Proto().type = net_type
    if model._distributed and not os.environ.get("NBCAFFE_NUM_THREADS"):
        from nbcaffe import distributed

        per_rank = distributed.threads_per_rank()
        if per_rank != threads.get_num_threads():
            log.info("Parallelize: %d processes share this host; nbcaffe uses %d CPU thread(s) per process"
                     " (set NBCAFFE_NUM_THREADS to choose)", distributed.local_size(), per_rank)
            threads.set_num_threads(per_rank)

    non_data_parallel = list(model.params)
    has_updates = param_update_builder_fun is not None or optimizer_builder_fun is not None
    if not has_updates and model.init_params:
        log.warning("Parallelize: model '%s' has no optimizer (a test model) but init_params=True; running its"
                    " init net would overwrite the trained parameters: use ModelHelper(init_params=False)", model.name)
    loss_scale = 1.0 / (len(devices) * num_shards)
    losses_by_device = {}
    for device in devices:
        with _graph.scoped(model, device):
            input_builder_fun(model)
            losses = forward_pass_builder_fun(model, loss_scale)
            if has_updates:
                if not isinstance(losses, (list, tuple)) or not all(
                        isinstance(loss, core.BlobReference) for loss in losses):
                    raise errors.NbcaffeError("forward_pass_builder_fun must return a list of loss BlobReferences,"
                                              f" got {losses!r}")
            losses_by_device[device] = losses
    model._losses_by_gpu = losses_by_device
    _graph.validate_params(model.params)

    model._device_grouped_blobs = _graph.group_by_device(model, devices, model.params, non_data_parallel)
    computed = _graph.group_by_device(model, devices, model.GetComputedParams(""), [])
    model._device_grouped_blobs.update(computed)
    model._param_names = list(model._device_grouped_blobs)
    model._computed_param_names = list(computed)

    if pre_grad_net_transformer_fun:
        pre_grad_net_transformer_fun(model)
    if has_updates:
        _add_gradient_operators(model, devices, losses_by_device)
    if net_transformer_fun:
        net_transformer_fun(model, len(devices), model._device_prefix, model._device_type)
    model._data_parallel_model_init_nets = [model.param_init_net]
    model._data_parallel_model_nets = [model.net]
    if not has_updates:
        _graph.infer_blob_device(model)
        return

    grads = [model.param_to_grad[p] for p in model.params if p in model.param_to_grad]
    non_dp_grads = [model.param_to_grad[p] for p in non_data_parallel if p in model.param_to_grad]
    grads_grouped = _graph.group_by_device(model, devices, grads, non_dp_grads)
    model._device_grouped_blobs.update(grads_grouped)
    model._grad_names = list(grads_grouped)
    _graph.infer_blob_device(model)

    if broadcast_computed_params and model._computed_param_names:
        _broadcast_computed_params(model)
    if model._grad_names:
        _allreduce_gradients(model)
    else:
        log.info("Parallelize: the builders created no parameters with gradients")

    all_params = list(model.GetParams(""))
    if shared_model:
        _graph.prune_parameters_for_sharing(model)
    if param_update_builder_fun is not None:
        for device in devices:
            with _graph.scoped(model, device):
                param_update_builder_fun(model)
    else:
        model._optimizer = optimizer_builder_fun(model)

    sync_blobs, sync_names = _graph.compute_blobs_to_sync(model)
    model._device_grouped_blobs.update(_graph.group_by_device(model, devices, sync_blobs, []))
    model._sync_names = sync_names
    _graph.infer_blob_device(model)
    _graph.analyze_operators(model)

    _graph.sync_all_params(model, model.param_init_net, model.param_init_net, sync_names)
    if post_sync_builder_fun is not None:
        for device in devices:
            with _graph.scoped(model, device):
                post_sync_builder_fun(model)
    if model._distributed:
        _add_barrier_net(model, barrier_net_timeout_sec)
    if shared_model:
        _graph.remap_parameters_for_sharing(model, all_params)


def _add_gradient_operators(model, devices, losses_by_device):
    """Seed each replica's losses with ones on its device, then one backward pass for all."""
    seeds = {}
    for device in devices:
        with core.DeviceScope(_graph.device_option(model, device)):
            for loss in losses_by_device[device]:
                seeds[str(loss)] = str(model.net.ConstantFill(loss, str(loss) + "_grad", value=1.0))
    model.AddGradientOperators(seeds)


def _broadcast_computed_params(model):
    if len(model._devices) == 1 and not model._distributed:
        return
    if model._distributed:
        world = _graph.create_common_world(model.param_init_net, "dpm_computed_cw", model._rendezvous)
        for name in model._computed_param_names:
            _graph.broadcast_distributed(model, model.net, name, world)
    else:
        for name in model._computed_param_names:
            _graph.broadcast_single_host(model, model.net, name)


def _allreduce_gradients(model):
    """Gradients in reverse order of their parameters (the last layer's are ready first)."""
    names = list(reversed(model._grad_names))
    if model._distributed:
        world = _graph.create_common_world(model.param_init_net, "dpm_allreduce_cw", model._rendezvous)
        for name in names:
            _graph.allreduce_distributed(model, model.net, name, world)
    elif len(model._devices) > 1:
        for name in names:
            _graph.allreduce_single_host(model, model.net, name)


def _add_barrier_net(model, timeout_sec):
    """A barrier every RunNet starts with: ranks that begin early wait for the others here
    (with the long barrier deadline) rather than inside the first gradient all-reduce."""
    init = core.Net("dpm_barrier_init_net")
    if timeout_sec is None:
        timeout_sec = model._rendezvous.get("timeout_sec", _DEFAULT_BARRIER_NET_TIMEOUT_SEC)
    world = _graph.create_common_world(init, "dpm_barrier_cw", model._rendezvous, timeout_sec)
    barrier = core.Net("dpm_barrier_net")
    barrier.Barrier([world], [], name="dpm_barrier")
    model._barrier_init_net = init
    model._barrier_net = barrier
    model._data_parallel_model_init_nets.insert(0, init)
    model._data_parallel_model_nets.insert(0, barrier)


# --------------------------------------------------------------------------- running


def CreateNet(model, overwrite=False):
    for net in model._data_parallel_model_nets:
        workspace.CreateNet(net, overwrite=overwrite)


def RunInitNet(model):
    """Run the init nets (parameters, then their broadcast from replica 0 / process 0) and
    create the training nets.  Distributed, it first checks that every process built the same
    net, so a mismatch fails here with a clear message instead of hanging in an all-reduce."""
    if getattr(model, "_distributed", False):
        _check_same_net_everywhere(model)
    for net in model._data_parallel_model_init_nets:
        workspace.RunNetOnce(net)
    CreateNet(model)


def RunNet(model, num_iterations):
    """Run the training net ``num_iterations`` times (after one barrier when distributed)."""
    for net in model._data_parallel_model_nets:
        workspace.RunNet(net.Proto().name, 1 if net is getattr(model, "_barrier_net", None) else num_iterations)


def Synchronize(model, timeout_sec=_DEFAULT_BARRIER_NET_TIMEOUT_SEC):
    """Wait until every process reaches this call (no-op in one process)."""
    if not getattr(model, "_distributed", False):
        return
    if model._sync_barrier_net is None:
        init = core.Net("dpm_sync_barrier_init_net")
        world = _graph.create_common_world(init, "dpm_sync_barrier_cw", model._rendezvous, timeout_sec)
        model._sync_barrier_net = core.Net("dpm_sync_barrier_net")
        model._sync_barrier_net.Barrier([world], [])
        workspace.RunNetOnce(init)
        workspace.CreateNet(model._sync_barrier_net)
    workspace.RunNet(model._sync_barrier_net.Proto().name)


def _net_fingerprint(model) -> np.ndarray:
    """A hash of what must agree between processes: every op's type and blob names and the
    shapes the init net fills (not other arguments: input ops may name per-process shards)."""
    digest = hashlib.sha256()
    for net in (model.param_init_net, model.net):
        for op in net.Proto().op:
            shape = [list(a.ints) for a in op.arg if a.name == "shape"]
            digest.update(repr((op.type, list(op.input), list(op.output), shape)).encode())
    return np.frombuffer(digest.digest()[:8], dtype=np.int64).copy()


def _check_same_net_everywhere(model):
    init = core.Net("dpm_check_init_net")
    world = _graph.create_common_world(init, "dpm_check_cw", model._rendezvous)
    workspace.RunNetOnce(init)
    mine = _net_fingerprint(model)
    workspace.FeedBlob("dpm_net_fingerprint", mine)
    check = core.Net("dpm_check_net")
    check.Allgather([world, "dpm_net_fingerprint"], ["dpm_net_fingerprints"])
    workspace.RunNetOnce(check)
    everyone = workspace.FetchBlob("dpm_net_fingerprints")
    differ = [r for r, value in enumerate(everyone) if value != mine[0]]
    if differ:
        raise errors.NbcaffeError(
            f"Parallelize: processes {differ} built a different net or init net than process"
            f" {model._rendezvous['shard_id']} (op types, blob names or parameter shapes differ); every process"
            f" must run the same training script with the same builders, devices and batch shapes")


# --------------------------------------------------------------------------- checkpoints


def GetCheckpointParams(model):
    """Blobs a complete checkpoint needs: the first replica's parameters and optimizer state
    (everything the init net creates in replica scopes) plus the iteration counters."""
    blobs, _ = _graph.compute_blobs_to_sync(model)
    first = _graph.replica_scope(model, model._devices[0]) + _graph.SEP
    chosen = {b for b in blobs if str(b).startswith(first)}
    return chosen | {core.BlobReference(b) for b in _graph.iteration_blobs(model)}


def FinalizeAfterCheckpoint(model, blobs=None, cpu_mode=False):
    """After loading a checkpoint (or initial parameters) into the first replica, copy it to
    every replica and, when distributed, from process 0 to every process (iteration counters
    included).  The sync net is built on the first call and rerun afterwards."""
    if not hasattr(model, "_checkpoint_net"):
        if blobs is None:
            _, names = _graph.compute_blobs_to_sync(model)
        else:
            prefix = model._device_prefix + "_"
            names = [strip_blob_name(b) for b in blobs if str(b).startswith(prefix)]
        for name in names:
            if name not in model._device_grouped_blobs:
                model._device_grouped_blobs[name] = {
                    d: core.BlobReference(f"{_graph.replica_scope(model, d)}{_graph.SEP}{name}")
                    for d in model._devices}
        net = core.Net("checkpoint_sync_net")
        init = core.Net("checkpoint_init_net")
        _graph.sync_all_params(model, init, net, names, world_blob="dpm_checkpoint_cw")
        if model._distributed:
            world = core.BlobReference("dpm_checkpoint_cw")
            for counter in _graph.iteration_blobs(model):
                with core.DeviceScope(DeviceOption(CPU)):
                    net.Broadcast([world, counter], [counter], root=0)
            workspace.RunNetOnce(init)
        workspace.CreateNet(net)
        model._checkpoint_net = net
    workspace.RunNet(model._checkpoint_net.Proto().name)


def GetLearningRateBlobNames(model):
    """The learning-rate blobs of the model's optimizer (one per GPU, one on the CPU)."""
    optimizer = getattr(model, "_optimizer", None)
    if optimizer is not None and hasattr(optimizer, "get_cpu_blob_name"):
        if model._device_type == CPU:
            return [optimizer.get_cpu_blob_name("lr")]
        return [optimizer.get_gpu_blob_name("lr", gpu, "") for gpu in model._devices]
    return [op.output[0] for op in model.net.Proto().op if op.type == "LearningRate"]


def ExtractPredictorNet(model, inputs, outputs, device):
    """(predictor net, parameter names) of the first replica, with ``inputs`` and ``outputs``
    under their unscoped names (the parameters keep theirs, e.g. 'gpu_0/conv1_w')."""
    prefix = _graph.replica_scope(model, model._devices[0]) + _graph.SEP
    scoped_in = [prefix + str(b) for b in inputs]
    scoped_out = [prefix + str(b) for b in outputs]
    renames = dict(zip(scoped_in + scoped_out, [str(b) for b in inputs] + [str(b) for b in outputs]))
    return extract_predictor_net(model.net.Proto(), scoped_in, scoped_out, device=device, renames=renames)


def ConvertNetForDevice(net, device=None):
    return convert_net_for_device(net, device)


def AddBlobSync(model, blobs, net=None):
    """Make every replica (and process) copy the first replica's ``blobs`` (unscoped names)
    each time ``net`` (default: the training net) runs."""
    if not blobs:
        return
    for blob in blobs:
        if str(blob).startswith(model._device_prefix):
            raise errors.ArgumentError(f"AddBlobSync: give unscoped blob names, got '{blob}'")
        model._device_grouped_blobs[str(blob)] = {
            d: core.BlobReference(f"{_graph.replica_scope(model, d)}{_graph.SEP}{blob}") for d in model._devices}
    _graph.sync_all_params(model, model.param_init_net, net if net is not None else model.net,
                           [str(b) for b in blobs])


def AddDistributedBlobSync(model, blobs):
    """Sum ``blobs`` over the processes (not over local replicas) each training step."""
    if not getattr(model, "_distributed", False):
        return
    world = _graph.create_common_world(model.param_init_net, "dpm_blob_sync_cw", model._rendezvous)
    model.net.Allreduce([world] + list(blobs), list(blobs))


def GetDevices(model):
    return model._devices


__all__ = ["Parallelize", "Parallelize_GPU", "Parallelize_CPU", "RunInitNet", "RunNet", "CreateNet", "Synchronize",
           "GetCheckpointParams", "FinalizeAfterCheckpoint", "GetLearningRateBlobNames", "ExtractPredictorNet",
           "ConvertNetForDevice", "AddBlobSync", "AddDistributedBlobSync", "GetDevices", "stripBlobName",
           "strip_blob_name", "extract_predictor_net"]
