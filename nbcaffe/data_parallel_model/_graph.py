"""Graph surgery of Parallelize: grouping blobs by replica and emitting the ops that keep
replicas in step (gradient all-reduce, parameter broadcast) inside one process and across
processes.  Everything here adds ops to nets; nothing runs."""

from __future__ import annotations

import collections
import logging

from nbcaffe import core, errors, scope
from nbcaffe.devices import CPU, CUDA, DeviceOption

log = logging.getLogger("nbcaffe")

SEP = "/"
DEFAULT_TIMEOUT_SEC = 300.0


def strip_blob_name(blob) -> str:
    """'gpu_0/conv1_w' -> 'conv1_w': the name of a blob without its replica scope."""
    name = str(blob)
    if SEP not in name:
        raise errors.ArgumentError(f"blob '{name}' has no replica name scope (expected '<prefix>_<id>/...')")
    return name[name.index(SEP) + 1:]


def replica_scope(model, device) -> str:
    return f"{model._device_prefix}_{device}"


def device_option(model, device):
    return DeviceOption(model._device_type, device)


def device_of_blob(model, blob) -> int:
    """The replica id in a blob name 'cpu_3/...' (checked against the model's prefix)."""
    name = str(blob)
    head = name.split(SEP, 1)[0]
    prefix = model._device_prefix + "_"
    if SEP not in name or not head.startswith(prefix) or not head[len(prefix):].isdigit():
        raise errors.NbcaffeError(
            f"Parallelize: parameter '{name}' was not created inside a replica's name scope"
            f" '{prefix}<id>/'; create parameters in forward_pass_builder_fun (or pass them to the model"
            f" before Parallelize, which leaves them out of data parallelism)")
    return int(head[len(prefix):])


def group_by_device(model, devices, blobs, non_data_parallel):
    """{unscoped name: {device: BlobReference}} in the blobs' order; the first
    ``len(non_data_parallel)`` entries (blobs that existed before Parallelize) are left out."""
    grouped = collections.OrderedDict()
    skip = {str(b) for b in non_data_parallel}
    for blob in blobs:
        if str(blob) in skip:
            continue
        device = device_of_blob(model, blob)
        if device not in devices:
            raise errors.NbcaffeError(f"Parallelize: blob '{blob}' belongs to device {device}, not one of {devices}")
        grouped.setdefault(strip_blob_name(blob), {})[device] = core.BlobReference(str(blob))
    return grouped


def validate_params(params):
    names = [str(p) for p in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise errors.NbcaffeError(f"Parallelize: duplicate entries in params: {dupes}")


def infer_blob_device(model):
    """{blob: DeviceOption} from the first op (init net, then net) that reads or writes it."""
    mapping = {}
    for proto in (model.param_init_net.Proto(), model.net.Proto()):
        for op in proto.op:
            option = op.device_option if op.HasField("device_option") else DeviceOption(CPU)
            if op.type in ("Iter", "AtomicIter"):
                option = DeviceOption(CPU)  # counters live on the host whatever the scope
            for blob in list(op.input) + list(op.output):
                mapping.setdefault(blob, option)
    model._blob_to_device = mapping


def is_gpu_blob(model, name) -> bool:
    option = model._blob_to_device.get(name)
    if option is None:
        option = model._blob_to_device.get(f"{replica_scope(model, model._devices[0])}{SEP}{name}")
    if option is None:
        return model._device_type == CUDA
    return option.device_type == CUDA


def blob_device_option(model, name, device):
    """Where replica ``device``'s copy of ``name`` lives."""
    return device_option(model, device) if is_gpu_blob(model, name) else DeviceOption(CPU)


def analyze_operators(model):
    """Refuse replica ops that touch another replica's blobs (outside the sync ops added here)."""
    sync_types = ("Copy", "CopyGPUToCPU", "CopyCPUToGPU", "Allreduce", "Broadcast", "Allgather", "Barrier")
    prefix = model._device_prefix + "_"
    for op in model.net.Proto().op:
        if op.type in sync_types or (op.type == "Sum" and op.name == "dpm"):
            continue
        if not op.HasField("device_option") or op.device_option.device_type != model._device_type:
            continue
        if model._device_type == CPU and op.device_option.device_id not in model._devices[1:]:
            continue  # CPU ops outside replica scopes (learning rate, counters) run as device 0
        own = f"{replica_scope(model, op.device_option.device_id)}{SEP}"
        for blob in list(op.input) + list(op.output):
            if blob.startswith(prefix) and not blob.startswith(own):
                raise errors.NbcaffeError(
                    f"Parallelize: op {op.type} on {model._device_prefix} {op.device_option.device_id} uses blob"
                    f" '{blob}' of another replica (expected the name scope '{own}'); build each replica's ops"
                    f" from its own blobs")


# ----------------------------------------------------------------------- one process


def broadcast_single_host(model, net, name, devices=None):
    """Copy the first device's ``name`` into every other replica's copy."""
    devices = devices or model._devices
    grouped = model._device_grouped_blobs[name]
    master = grouped[devices[0]]
    for device in devices[1:]:
        with core.DeviceScope(blob_device_option(model, name, device)):
            net.Copy(master, grouped[device])


def allreduce_single_host(model, net, name):
    """Sum every replica's ``name`` into the first one, then copy it back (unless the model
    shares parameters, where only the first replica's copy is read)."""
    devices = model._devices
    grouped = model._device_grouped_blobs[name]
    blobs = [grouped[d] for d in devices]
    master_option = blob_device_option(model, name, devices[0])
    with core.DeviceScope(master_option):
        if master_option.device_type == CUDA:
            # bring the other GPUs' copies to the first GPU (nbcaffe assumes no peer access)
            blobs = [blobs[0]] + [net.Copy(b, f"{grouped[devices[0]]}_{model._device_prefix}{d}_copy")
                                  for d, b in zip(devices[1:], blobs[1:])]
        net.Sum(blobs, [blobs[0]], name="dpm")
    if not model._shared_model:
        broadcast_single_host(model, net, name)


# ----------------------------------------------------------------------- several processes


def create_common_world(init_net, blob, rendezvous, timeout_sec=None):
    """A CreateCommonWorld op in ``init_net`` (reused when the net already has one of that name)."""
    for op in init_net.Proto().op:
        if op.type == "CreateCommonWorld" and op.output[0] == blob:
            return core.BlobReference(blob)
    timeout = timeout_sec if timeout_sec is not None else rendezvous.get("timeout_sec", DEFAULT_TIMEOUT_SEC)
    kv = rendezvous.get("kv_handler")
    with core.DeviceScope(DeviceOption(CPU)):
        return init_net.CreateCommonWorld([kv] if kv else [], blob, name=f"{blob}_op", size=rendezvous["num_shards"],
                                          rank=rendezvous["shard_id"], timeout_ms=int(timeout * 1000))


def allreduce_distributed(model, net, name, world):
    """One Allreduce over every local replica's copy and every process."""
    grouped = model._device_grouped_blobs[name]
    blobs = [grouped[d] for d in model._devices]
    with core.DeviceScope(blob_device_option(model, name, model._devices[0])):
        net.Allreduce([world] + blobs, blobs, name=f"dpm_allreduce_{name}")


def broadcast_distributed(model, net, name, world, devices=None):
    """Every replica of every process gets process 0's first-replica ``name``."""
    devices = devices or model._devices
    grouped = model._device_grouped_blobs[name]
    blobs = [grouped[d] for d in devices]
    with core.DeviceScope(blob_device_option(model, name, devices[0])):
        net.Broadcast([world] + blobs, blobs, root=0, name=f"dpm_broadcast_{name}")


def sync_all_params(model, init_net, net, names, world_blob="dpm_broadcast_cw"):
    """Make every replica (and every process) hold the first replica's (of process 0) values."""
    rendezvous = model._rendezvous
    if rendezvous is None or rendezvous["num_shards"] <= 1:
        for name in names:
            broadcast_single_host(model, net, name)
        return
    world = create_common_world(init_net, world_blob, rendezvous)
    for name in sorted(names):  # the same order on every process
        broadcast_distributed(model, net, name, world)


def compute_blobs_to_sync(model):
    """(blobs, unscoped names) of everything the init net creates inside replica scopes
    (parameters, optimizer state), or only the computed params when the model is shared."""
    prefix = model._device_prefix + "_"
    if model._shared_model:
        blobs = [str(p) for p in model.GetComputedParams("")]
    else:
        blobs = [out for op in model.param_init_net.Proto().op for out in op.output if out.startswith(prefix)]
        missing = set(model._param_names) - {strip_blob_name(b) for b in blobs}
        if missing:
            raise errors.NbcaffeError(f"Parallelize: params not created by the param init net: {sorted(missing)}")
    blobs = sorted(set(blobs), key=lambda b: (device_of_blob(model, b), b))
    names = list(dict.fromkeys(strip_blob_name(b) for b in blobs))
    return [core.BlobReference(b) for b in blobs], names


def iteration_blobs(model):
    """Counters advanced by Iter/AtomicIter outside replica scopes (checkpointed with the params)."""
    prefix = model._device_prefix + "_"
    return sorted({op.output[0] for op in model.net.Proto().op
                   if op.type in ("Iter", "AtomicIter") and not op.output[0].startswith(prefix)})


# ----------------------------------------------------------------------- shared parameters


def prune_parameters_for_sharing(model):
    """Only the first replica's parameters get update ops."""
    master = replica_scope(model, model._devices[0]) + SEP
    model.params = [p for p in model.params if str(p).startswith(master)]
    keep = {str(p) for p in model.params}
    model.param_to_grad = {p: g for p, g in model.param_to_grad.items() if str(p) in keep}
    model.weights = [w for w in model.weights if str(w) in keep]
    model.biases = [b for b in model.biases if str(b) in keep]


def remap_parameters_for_sharing(model, all_params):
    """Drop the other replicas' parameter fills and make their ops read the first replica's."""
    master = replica_scope(model, model._devices[0]) + SEP
    all_names = {str(p) for p in all_params}
    master_names = {str(p) for p in model.params}
    for net in (model.param_init_net, model.net):
        kept, sites = [], []
        old_sites = getattr(net, "_creation_sites", [])
        for index, op in enumerate(net.Proto().op):
            if any(o in all_names and o not in master_names for o in op.output):
                continue
            for j, blob in enumerate(op.input):
                if blob in all_names and blob not in master_names:
                    op.input[j] = master + strip_blob_name(blob)
            kept.append(op)
            sites.append(old_sites[index] if index < len(old_sites) else None)
        del net.Proto().op[:]
        net.Proto().op.extend(kept)
        net._creation_sites = sites


def scoped(model, device):
    """Context: the replica's DeviceScope and NameScope."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(core.DeviceScope(device_option(model, device)))
    stack.enter_context(scope.NameScope(replica_scope(model, device)))
    return stack
