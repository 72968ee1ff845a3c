"""Workspaces: named blob stores plus the nets created in them (Caffe2's ``workspace``).

The module-level functions (``FeedBlob``, ``RunNet``, ...) act on the *current* workspace,
exactly as in Caffe2; :class:`Workspace` objects offer the same operations as methods.

Blob values are NumPy arrays (CPU tensors), numba device arrays (CUDA tensors), ``bytes``
(string blobs) or any Python object an op stores (DB readers, mutexes, ...).  A blob that a
created net will produce but that has not been written yet holds ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np

from nbcaffe import dispatch, errors, registry, scope, threads, utils
from nbcaffe import net as _net
from nbcaffe.devices import CPU, CUDA, describe
from nbcaffe.proto import caffe2_pb2

log = logging.getLogger("nbcaffe")


def _name(blob) -> str:
    return str(blob)


def _net_def_and_sites(net):
    """(NetDef, creation sites) from a core.Net, a NetDef, or serialized bytes."""
    if isinstance(net, caffe2_pb2.NetDef):
        from nbcaffe import core

        return net, core.creation_sites(net)
    if hasattr(net, "Proto") and callable(net.Proto):
        return net.Proto(), getattr(net, "_creation_sites", None)
    if isinstance(net, (bytes, bytearray)):
        return utils.parse_proto(net, caffe2_pb2.NetDef, "net"), None
    raise TypeError(f"expected a core.Net or caffe2_pb2.NetDef, got {type(net).__name__}")


def _to_host_value(value):
    """Normalise a fed Python value to what a CPU blob stores."""
    if isinstance(value, caffe2_pb2.TensorProto):
        return utils.Caffe2TensorToNumpyArray(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU":  # Caffe2 stores string tensors as object arrays of bytes
            out = np.empty(value.shape, dtype=object)
            out.reshape(-1)[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                                  for v in value.reshape(-1).tolist()]
            return out
        return np.array(value, copy=True, order="C")
    if isinstance(value, (int, float, bool, np.generic, list, tuple)):
        return np.array(value, order="C")
    return value  # arbitrary Python object blob


class Workspace:
    """A named set of blobs and created nets.

    Example:
        >>> ws = Workspace("scratch")
        >>> ws.feed_blob("x", np.ones(3, np.float32))
        True
        >>> ws.fetch_blob("x").sum()
        3.0
    """

    def __init__(self, name="", root_folder=None):
        self.name = name
        self.blobs: dict = {}
        self.nets: dict = {}
        self.root_folder = root_folder or os.getcwd()

    def __repr__(self):
        return f"Workspace({self.name!r}, {len(self.blobs)} blobs, {len(self.nets)} nets)"

    # ----------------------------------------------------------------- blobs
    def feed_blob(self, name, value, device_option=None):
        """Store a copy of ``value`` under ``name`` on the device of ``device_option`` (default:
        the current DeviceScope).  Accepts arrays, scalars, TensorProtos and strings."""
        name = _name(name)
        if device_option is None:
            device_option = scope.CurrentDeviceScope()
        host = _to_host_value(value)
        if device_option is not None and device_option.device_type == CUDA:
            if not isinstance(host, np.ndarray) or host.dtype == object:
                raise errors.DeviceMismatchError(
                    f"FeedBlob('{name}'): only numeric tensors can live on CUDA, got {type(value).__name__}")
            if host.dtype == np.float64:
                warnings.warn(f"FeedBlob('{name}'): feeding a float64 array onto {describe(device_option)};"
                              " most CUDA kernels expect float32", stacklevel=3)
            self.blobs[name] = dispatch.context_for(device_option).from_host(host)
        elif device_option is not None and device_option.device_type not in (CPU, CUDA):
            raise errors.UnsupportedOperatorError(
                f"FeedBlob('{name}'): device_type {device_option.device_type} is not supported")
        else:
            self.blobs[name] = host
        return True

    def fetch_blob(self, name):
        """A host copy of a tensor blob (NumPy array), ``bytes`` for string blobs, or the
        object itself for other blobs."""
        name = _name(name)
        try:
            value = self.blobs[name]
        except KeyError:
            hint = errors.did_you_mean(name, self.blobs)
            scoped = [b for b in self.blobs if b.endswith("/" + name)]
            if scoped:
                hint += f" Name-scoped blobs ending in it: {', '.join(scoped[:5])}."
            raise errors.BlobNotFoundError(f"Can't find blob: '{name}' in workspace '{self.name}'.{hint}") from None
        if value is None:
            raise errors.BlobNotFoundError(
                f"Blob '{name}' exists in workspace '{self.name}' but holds no value yet: the net that"
                f" produces it was created but has not run.")
        if isinstance(value, np.ndarray):
            return value.copy()
        if hasattr(value, "copy_to_host"):
            return value.copy_to_host()
        return value

    def has_blob(self, name) -> bool:
        return _name(name) in self.blobs

    def create_blob(self, name):
        """Declare an empty blob (Caffe2's CreateBlob); returns a :class:`Blob` handle."""
        self.blobs.setdefault(_name(name), None)
        return Blob(self, _name(name))

    def remove_blob(self, name):
        self.blobs.pop(_name(name), None)

    def blob_names(self) -> list:
        return sorted(self.blobs)

    # ----------------------------------------------------------------- running
    def run_operator_once(self, op_def):
        """Instantiate and run one OperatorDef."""
        if not isinstance(op_def, caffe2_pb2.OperatorDef):
            op_def = utils.parse_proto(op_def, caffe2_pb2.OperatorDef, "operator")
        op = _net.create_operator(op_def, self, index=0)
        try:
            with threads.REGION:
                op.run()
        except Exception as exc:
            from nbcaffe.operator import wrap_failure
            raise wrap_failure(op, exc) from exc
        return True

    def run_operators_once(self, op_defs):
        for op_def in op_defs:
            self.run_operator_once(op_def)
        return True

    def run_net_once(self, net):
        """Instantiate a net, run it once and discard it."""
        net_def, sites = _net_def_and_sites(net)
        _net.NetInstance(net_def, self, sites=sites).run()
        return True

    def create_net(self, net, overwrite=False, input_blobs=None):
        """Instantiate a net and keep it under its name for ``run_net``.

        Every op input must already be in the workspace or be produced by an earlier op
        (``input_blobs`` are declared first).  Refuses to replace an existing net of the same
        name unless ``overwrite``.
        """
        net_def, sites = _net_def_and_sites(net)
        for blob in input_blobs or ():
            self.blobs.setdefault(_name(blob), None)
        if net_def.name in self.nets and not overwrite:
            raise errors.NbcaffeError(
                f"I respectfully refuse to overwrite an existing net of the same name '{net_def.name}',"
                f" unless you explicitly specify overwrite=True.")
        copy = caffe2_pb2.NetDef()
        copy.CopyFrom(net_def)  # later edits of the builder do not change the created net
        self.nets[net_def.name] = _net.NetInstance(copy, self, sites=sites)
        return True

    def run_net(self, name, num_iter=1, allow_fail=False):
        """Run a created net ``num_iter`` times (``name``: str or core.Net)."""
        if hasattr(name, "Name") and callable(name.Name):
            name = name.Name()
        elif isinstance(name, caffe2_pb2.NetDef):
            raise TypeError("RunNet takes a net name or a core.Net; create the NetDef with CreateNet first")
        name = str(name)
        instance = self.nets.get(name)
        if instance is None:
            raise errors.NbcaffeError(
                f"Net '{name}' has not been created in workspace '{self.name}'; call CreateNet first."
                f"{errors.did_you_mean(name, self.nets)}")
        if allow_fail:
            try:
                return instance.run(num_iter)
            except errors.NbcaffeError as exc:
                log.warning("RunNet('%s') failed: %s", name, exc)
                return False
        return instance.run(num_iter)

    def run_plan(self, plan_or_step):
        plan = _net.as_plan_def(plan_or_step)
        return _net.PlanRunner(plan, self).run()

    def run(self, obj):
        """Run a net (once), a plan, an execution step or an operator, like Caffe2's ws.run."""
        if isinstance(obj, caffe2_pb2.OperatorDef):
            return self.run_operator_once(obj)
        if isinstance(obj, (caffe2_pb2.PlanDef, caffe2_pb2.ExecutionStep)) or type(obj).__name__ in (
                "Plan", "ExecutionStep"):
            return self.run_plan(obj)
        return self.run_net_once(obj)

    def reset(self, root_folder=None):
        self.blobs.clear()
        self.nets.clear()
        if root_folder is not None:
            os.makedirs(root_folder, exist_ok=True)
            self.root_folder = root_folder
        return True

    # ----------------------------------------------------------------- inference
    def infer_shapes_and_types(self, nets, blob_dimensions=None, blob_types=None):
        """Static shape/type inference over nets; see :func:`InferShapesAndTypes`."""
        from nbcaffe import shape_inference

        return shape_inference.infer_nets(self, nets, blob_dimensions, blob_types)


class Blob:
    """Handle to one blob of a workspace (Caffe2's ``ws.create_blob(name)`` object)."""

    def __init__(self, ws, name):
        self._ws = ws
        self.name = name

    def feed(self, value, device_option=None):
        return self._ws.feed_blob(self.name, value, device_option)

    def fetch(self):
        return self._ws.fetch_blob(self.name)

    def is_tensor(self):
        value = self._ws.blobs.get(self.name)
        return isinstance(value, np.ndarray) or hasattr(value, "copy_to_host")

    def __repr__(self):
        return f"Blob({self.name!r})"


# ---------------------------------------------------------------------- module state
_workspaces: dict[str, Workspace] = {"default": Workspace("default")}
_current = ["default"]


def current() -> Workspace:
    """The current :class:`Workspace` object."""
    return _workspaces[_current[0]]


def CurrentWorkspace() -> str:
    return _current[0]


def Workspaces() -> list:
    return list(_workspaces)


def SwitchWorkspace(name, create_if_missing=None):
    """Make workspace ``name`` current; create it only when ``create_if_missing``."""
    name = str(name)
    if name not in _workspaces:
        if not create_if_missing:
            raise errors.NbcaffeError(
                f"Workspace '{name}' does not exist; pass create_if_missing=True to create it."
                f"{errors.did_you_mean(name, _workspaces)}")
        _workspaces[name] = Workspace(name, root_folder=current().root_folder)
    _current[0] = name
    return True


def ResetWorkspace(root_folder=None):
    """Empty the current workspace (blobs and nets); optionally set its root folder."""
    return current().reset(root_folder)


def RootFolder() -> str:
    return current().root_folder


@contextlib.contextmanager
def WorkspaceGuard(name):
    """Run the block in workspace ``name`` (created if needed), then switch back."""
    previous = CurrentWorkspace()
    SwitchWorkspace(name, True)
    try:
        yield
    finally:
        SwitchWorkspace(previous)


@contextlib.contextmanager
def temp_workspace(name="_temp_"):
    """A fresh, empty workspace for the block; removed afterwards."""
    previous = CurrentWorkspace()
    _workspaces.pop(name, None)
    SwitchWorkspace(name, True)
    try:
        yield current()
    finally:
        _current[0] = previous
        _workspaces.pop(name, None)


def FeedBlob(name, arr, device_option=None):
    return current().feed_blob(name, arr, device_option)


def FetchBlob(name):
    return current().fetch_blob(name)


def FetchBlobs(names):
    return [FetchBlob(n) for n in names]


def HasBlob(name) -> bool:
    return current().has_blob(name)


def Blobs() -> list:
    return current().blob_names()


def CreateBlob(name):
    current().create_blob(name)
    return True


def SerializeBlob(name) -> bytes:
    """The blob ``name`` of the current workspace as one serialized ``BlobProto`` (Caffe2's
    format, no chunking: a tensor records its dims, dtype, device and all its values).

    Example:
        >>> FeedBlob("w", np.ones(2, np.float32)); DeserializeBlob("w_copy", SerializeBlob("w"))
        True
        True
    """
    from nbcaffe import serialization

    name = _name(name)
    value = current().blobs.get(name)
    if value is None:
        state = "holds no value yet" if name in current().blobs else "does not exist"
        raise errors.BlobNotFoundError(f"SerializeBlob: blob '{name}' {state} in workspace '{current().name}'."
                                       f"{errors.did_you_mean(name, current().blobs)}")
    return serialization.serialize_whole(name, value)


def DeserializeBlob(name, serialized_blob):
    """Store the blob serialized by :func:`SerializeBlob` (or read from a DB record) under
    ``name``; a tensor returns to the device recorded in it (a CUDA tensor to its GPU)."""
    from nbcaffe import serialization

    value, device_detail = serialization.deserialize_whole(serialized_blob, f"DeserializeBlob('{name}')")
    current().blobs[_name(name)] = serialization.place(value, device_detail)
    return True


def RunOperatorOnce(operator):
    return current().run_operator_once(operator)


def RunOperatorsOnce(operators):
    return current().run_operators_once(operators)


def RunNetOnce(net):
    return current().run_net_once(net)


def CreateNet(net, overwrite=False, input_blobs=None):
    return current().create_net(net, overwrite, input_blobs)


def RunNet(name, num_iter=1, allow_fail=False):
    return current().run_net(name, num_iter, allow_fail)


def RunPlan(plan_or_step):
    return current().run_plan(plan_or_step)


def BenchmarkNet(name, warmup_runs, main_runs, run_individual):
    """Time a created net (Caffe2's ``workspace.BenchmarkNet``).

    Returns ``[ms per iteration]``, followed by each operator's mean ms when
    ``run_individual``; with ``run_individual`` it also logs a per-op and per-op-type table.
    """
    if hasattr(name, "Name") and callable(name.Name):
        name = name.Name()
    instance = current().nets.get(str(name))
    if instance is None:
        raise errors.NbcaffeError(f"BenchmarkNet: net '{name}' has not been created; call CreateNet first."
                                  f"{errors.did_you_mean(str(name), current().nets)}")
    result = instance.benchmark(warmup_runs, main_runs, run_individual)
    if run_individual:
        log.info("%s", format_op_timings(instance, result))
    return result


def format_op_timings(instance, result) -> str:
    """A Caffe2-style table: per operator and per operator type, ms and share of the total."""
    per_op = result[1:]
    total = sum(per_op) or 1.0
    lines = [f"Main run: {result[0]:.4f} ms/iter; per-operator times (sum {sum(per_op):.4f} ms):"]
    by_type = {}
    for op, ms in zip(instance.ops, per_op):
        lines.append(f"  #{op.index:<4d} {op.type:28s} {ms:10.4f} ms  {100 * ms / total:5.1f}%")
        by_type[op.type] = by_type.get(op.type, 0.0) + ms
    lines.append("Per operator type:")
    for op_type, ms in sorted(by_type.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {op_type:28s} {ms:10.4f} ms  {100 * ms / total:5.1f}%")
    return "\n".join(lines)


def Nets() -> list:
    return list(current().nets)


def InferShapesAndTypes(nets, blob_dimensions=None, nets_proto=False, blob_types=None):
    """Infer every blob's shape and type over ``nets`` without running them.

    Starts from the current workspace's tensors plus ``blob_dimensions`` ({name: dims}) and
    ``blob_types`` ({name: TensorProto.DataType}).  Returns ``(shapes, types)``: dicts of
    name -> list of dims and name -> TensorProto.DataType value; blobs whose shape cannot be
    known statically are left out.
    """
    return current().infer_shapes_and_types(nets, blob_dimensions, blob_types)


def RegisteredOperators() -> list:
    """Names of every registered operator type (CUDA kernels need no extra registration)."""
    return sorted(registry.SCHEMAS)


def StringifyProto(obj):
    if isinstance(obj, (str, bytes)):
        return obj
    if hasattr(obj, "SerializeToString"):
        return obj.SerializeToString()
    if hasattr(obj, "Proto"):
        return obj.Proto().SerializeToString()
    raise ValueError(f"cannot stringify {type(obj).__name__}")


FLAGS: dict = {}


def GlobalInit(args):
    """Accept Caffe2/gflags-style arguments (``['caffe2', '--caffe2_log_level=0']``).

    ``--caffe2_log_level=N`` sets the 'nbcaffe' logger (N <= 0: INFO, 1: WARNING, 2: ERROR,
    >= 3: CRITICAL; negative: DEBUG).  Every ``--name[=value]`` flag is stored in
    ``workspace.FLAGS``; positional arguments (the program name) are ignored.
    """
    for arg in list(args)[0:]:
        if not isinstance(arg, str) or not arg.startswith("--"):
            continue
        key, _, value = arg[2:].partition("=")
        FLAGS[key] = value if value else "true"
    if "caffe2_log_level" in FLAGS:
        level = int(FLAGS["caffe2_log_level"])
        log.setLevel(logging.DEBUG if level < 0 else {0: logging.INFO, 1: logging.WARNING,
                                                       2: logging.ERROR}.get(level, logging.CRITICAL))
    return True


def NumCudaDevices() -> int:
    """Number of usable CUDA devices (the simulator counts as one); imports numba.cuda lazily."""
    if not dispatch.cuda_available():
        return 0
    return dispatch.load_cuda().device_count()


def NumGpuDevices() -> int:
    return NumCudaDevices()


GpuDeviceType = CUDA


class _BlobsView:
    """``workspace.blobs``: dict-like access to the current workspace (get fetches, set feeds)."""

    def __getitem__(self, name):
        return FetchBlob(name)

    def __setitem__(self, name, value):
        FeedBlob(name, value)

    def __contains__(self, name):
        return HasBlob(name)

    def __iter__(self):
        return iter(Blobs())

    def __len__(self):
        return len(current().blobs)

    def keys(self):
        return Blobs()

    def items(self):
        return [(k, FetchBlob(k)) for k in Blobs() if current().blobs[k] is not None]


blobs = _BlobsView()


def __getattr__(name):
    # `has_gpu_support`/`has_cuda_support` need numba.cuda, which import nbcaffe must not load.
    if name in ("has_gpu_support", "has_cuda_support"):
        return dispatch.cuda_available()
    if name == "Predictor":  # Caffe2's workspace.Predictor(init_net_bytes, predict_net_bytes)
        from nbcaffe.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'nbcaffe.workspace' has no attribute '{name}'")


# Immediate mode lives in nbcaffe/immediate.py (it uses the functions above); Caffe2's names here.
from nbcaffe.immediate import (  # noqa: E402, F401
    FeedImmediate,
    FetchImmediate,
    ImmediateBlobs,
    IsImmediate,
    RunOperatorImmediate,
    StartImmediate,
    StopImmediate,
)
