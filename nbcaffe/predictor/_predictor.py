"""The Predictor: an init net run once, then a predict net run on fed inputs (Caffe2's
``workspace.Predictor`` / C++ ``caffe2::Predictor``), on the CPU or a GPU."""

from __future__ import annotations

import itertools
import os

import numpy as np

from nbcaffe import errors, utils
from nbcaffe import workspace as _workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption, describe, is_device_array
from nbcaffe.proto import caffe2_pb2

_counter = itertools.count()


def as_device_option(device):
    """A DeviceOption from None / 'cpu' / 'cuda' / 'gpu' / 'cuda:1' / a device type / a DeviceOption
    (None stays None: run the nets on the devices they name)."""
    if device is None or isinstance(device, caffe2_pb2.DeviceOption):
        return device
    if isinstance(device, int):
        if device not in (CPU, CUDA):
            raise errors.ArgumentError(f"device type {device} is not supported; use 0 (CPU) or 1 (CUDA)")
        return DeviceOption(device, 0)
    if isinstance(device, str):
        kind, _, ordinal = device.strip().lower().partition(":")
        if kind in ("cpu",) and not ordinal:
            return DeviceOption(CPU)
        if kind in ("cuda", "gpu") and (not ordinal or ordinal.isdigit()):
            return DeviceOption(CUDA, int(ordinal or 0))
    raise errors.ArgumentError(
        f"device {device!r}: give 'cpu', 'cuda', 'cuda:<id>', 'gpu', a device type (0/1) or a caffe2_pb2.DeviceOption")


def as_net_def(net, what) -> caffe2_pb2.NetDef:
    """A private copy of a NetDef given as a NetDef, a core.Net, serialized bytes or a file path."""
    if isinstance(net, caffe2_pb2.NetDef):
        proto = net
    elif hasattr(net, "Proto") and callable(net.Proto):
        proto = net.Proto()
    elif isinstance(net, (bytes, bytearray)):
        proto = utils.parse_proto(net, caffe2_pb2.NetDef, what)
    elif isinstance(net, (str, os.PathLike)):
        if not os.path.isfile(net):
            raise errors.NbcaffeError(f"{what}: no such file '{os.fspath(net)}'")
        proto = utils.read_net(net)
    else:
        raise TypeError(f"{what}: expected a NetDef, a core.Net, serialized bytes or a file path,"
                        f" got {type(net).__name__}")
    copy = caffe2_pb2.NetDef()
    copy.CopyFrom(proto)
    return copy


def move_to_device(net_def, device):
    """Put every op of ``net_def`` (and the net) on ``device``, in place.  An empty
    ``device_option {}`` written in a file means CPU to Caffe2, so every op is overwritten."""
    net_def.device_option.CopyFrom(device)
    for op in net_def.op:
        op.device_option.CopyFrom(device)


def _reader_devices(net_def):
    """{blob: DeviceOption of the first op reading it} for the net's external inputs."""
    found = {}
    for op in net_def.op:
        option = op.device_option if op.HasField("device_option") else net_def.device_option
        for name in op.input:
            found.setdefault(name, option)
    return found


class Predictor:
    """Run a model: the init net once at construction, the predict net on every :meth:`run`.

    Args:
        init_net, predict_net: NetDefs, ``core.Net`` objects, serialized bytes (Caffe2's
            ``workspace.Predictor(init_net.SerializeToString(), ...)``) or ``.pb``/``.pbtxt``
            paths.
        device: where to run (``'cpu'``, ``'cuda'``, ``'cuda:1'``, a DeviceOption); every op of
            both nets is moved there.  None (default) runs the ops on the devices they name.
        workspace: a :class:`nbcaffe.workspace.Workspace` to hold the parameters; by default the
            predictor has its own, so its blobs never mix with the current workspace's.
        input_names / output_names: restrict and order the inputs a dict may name / the
            outputs returned (default: any external input / every external output).
        run_init: run ``init_net`` (False: the workspace already holds the parameters).
        optimize: run a rewritten copy of the predict net (nbcaffe/predictor/optimize.py: batch
            norms and per-channel Mul/Add folded into the Conv or SpatialBN before them, Conv +
            Relu as one ConvRelu), CPU nets only; ``predict_net`` itself is never changed and
            ``running_net`` is the NetDef actually run.  Outputs differ from the plain net by
            float rounding only.  A ``run`` that feeds a blob the rewrite folded runs the plain
            net.  False runs ``predict_net`` as written.

    ``run([x, ...])`` binds arrays to the first external inputs of the predict net in order,
    ``run({name: x})`` by name; both return the external outputs as a list of NumPy arrays.

    Example:
        >>> p = Predictor("init_net.pb", "predict_net.pb", device="cpu")   # doctest: +SKIP
        >>> (prob,) = p.run({"data": images})                                # doctest: +SKIP
    """

    def __init__(self, init_net, predict_net, device=None, *, workspace=None, input_names=None,
                 output_names=None, run_init=True, optimize=True):
        self.device = as_device_option(device)
        self.init_net = as_net_def(init_net, "init_net")
        self.predict_net = as_net_def(predict_net, "predict_net")
        if not self.predict_net.name:
            self.predict_net.name = f"predictor_{next(_counter)}"
        if self.device is not None:
            move_to_device(self.init_net, self.device)
            move_to_device(self.predict_net, self.device)
        self.ws = workspace if workspace is not None else _workspace.Workspace(f"predictor:{self.predict_net.name}")
        externals = list(self.predict_net.external_input)
        self.input_names = list(input_names) if input_names is not None else None
        self.output_names = list(output_names) if output_names is not None else list(self.predict_net.external_output)
        for name in (self.input_names or []):
            if name not in externals:
                raise errors.ArgumentError(f"Predictor: input '{name}' is not an external input of net"
                                           f" '{self.predict_net.name}'{errors.did_you_mean(name, externals)}")
        if not self.output_names:
            raise errors.ArgumentError(f"Predictor: net '{self.predict_net.name}' declares no external_output;"
                                       " add the blobs to return to predict_net.external_output")
        if run_init:
            self.ws.run_net_once(self.init_net)
        missing = [name for name in externals if name not in self.ws.blobs]
        self._feed_devices = _reader_devices(self.predict_net)
        self.ws.create_net(self.predict_net, overwrite=True, input_blobs=missing)
        self.running_net, self._folded = self.predict_net, set()
        if optimize:
            from nbcaffe.predictor import optimize as _optimize

            running, folded = _optimize.optimize_for_inference(
                self.predict_net, self.ws, keep=self.output_names, fed=set(missing) | set(self.input_names or ()))
            if list(running.op) != list(self.predict_net.op):
                running.name = f"{self.predict_net.name}/optimized"
                self.ws.create_net(running, overwrite=True, input_blobs=missing)
                self.running_net, self._folded = running, folded

    def __repr__(self):
        where = describe(self.device) if self.device is not None else "as written"
        names = self.input_names if self.input_names is not None else list(self.predict_net.external_input)
        shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
        return (f"Predictor(net '{self.predict_net.name}', {len(self.predict_net.op)} ops, device {where},"
                f" inputs [{shown}], outputs {self.output_names})")

    @property
    def workspace(self):
        return self.ws

    def run(self, inputs):
        """Feed ``inputs`` (a list/tuple bound to the first external inputs, a dict by name, or
        one array), run the predict net, return the outputs as NumPy arrays (host copies)."""
        externals = self.predict_net.external_input
        if isinstance(inputs, dict):
            allowed = self.input_names if self.input_names is not None else list(externals)
            for name in inputs:
                if name not in allowed:
                    raise errors.ArgumentError(
                        f"Predictor.run: '{name}' is not an input of net '{self.predict_net.name}'."
                        f"{errors.did_you_mean(str(name), allowed)} (inputs: {', '.join(allowed[:8])}"
                        f"{', ...' if len(allowed) > 8 else ''})")
            pairs = list(inputs.items())
        else:
            if isinstance(inputs, np.ndarray) or is_device_array(inputs):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(externals):
                raise errors.ArgumentError(f"Predictor.run: {len(inputs)} inputs given but net"
                                           f" '{self.predict_net.name}' has {len(externals)} external inputs")
            names = self.input_names if self.input_names is not None else externals
            pairs = list(zip(names, inputs))
        net = self.running_net
        for name, value in pairs:
            self._feed(name, value)
            if name in self._folded:  # the rewrite treated this blob as a constant
                net = self.predict_net
        self.ws.run_net(net.name)
        return [self.ws.fetch_blob(name) for name in self.output_names]

    def _feed(self, name, value):
        """Copy ``value`` into the blob, into its existing buffer when shape and dtype match, so
        the ops bound to that buffer keep their fast path (no re-binding per run)."""
        device = self._feed_devices.get(name)
        current = self.ws.blobs.get(name)
        if is_device_array(value):
            value = value.copy_to_host()
        value = np.asarray(value)
        on_cuda = device is not None and device.device_type == CUDA
        if current is not None and current.shape == value.shape and current.dtype == value.dtype:
            if on_cuda and is_device_array(current):
                current.copy_to_device(np.ascontiguousarray(value))
                return
            if not on_cuda and isinstance(current, np.ndarray):
                np.copyto(current, value)
                return
        self.ws.feed_blob(name, value, device if device is not None else DeviceOption(CPU))
