"""The prepared model the ONNX backend returns: Caffe2 nets in a private workspace.

``NbcaffeRep.run(inputs)`` feeds the graph inputs (a list/tuple in graph order, a single
array, or a dict by name), runs the predict net and returns the graph outputs as a
namedtuple-like object (index by position or by output name), like ONNX's BackendRep.

Specialisation: when the graph uses graph inputs as attributes (a Slice's ``starts`` fed at
run time, as ONNX's node tests do) or needs static dims that depend on symbolic input dims,
the nets are built at the first run for the values/shapes fed, cached under those values, and
rebuilt when different values arrive.  Initializers are filled once and shared (the same
arrays) by every specialised workspace.
"""

from __future__ import annotations

import numpy as np
from onnx.backend.base import BackendRep, namedtupledict

from nbcaffe import errors, workspace
from nbcaffe.onnx import converter
from nbcaffe.onnx.helper import OnnxConversionError, value_info_shape


class NbcaffeRep(BackendRep):
    """Nets converted from an ONNX model, ready to run on ``device``."""

    MAX_SPECIALISATIONS = 64

    def __init__(self, model, device_option, opset_version=None):
        self.model = model
        self.device_option = device_option
        self.opset_version = opset_version
        g = model.graph
        initializers = {t.name for t in g.initializer}
        self.input_infos = [vi for vi in g.input if vi.name not in initializers]
        self.input_names = [vi.name for vi in self.input_infos]
        self.output_names = [vi.name for vi in g.output]
        self._outputs_type = namedtupledict("Outputs", self.output_names)
        self._value_keys = set()  # graph inputs whose values the nets depend on
        self._shape_key = False  # nets depend on the fed shapes
        self._nets = {}  # key -> (workspace, predict net name)
        self._base = workspace.Workspace("onnx_weights")
        self._weights_done = False
        self.init_net = self.predict_net = None
        try:
            self._build(())
        except converter.NeedsInputValues as exc:
            self._value_keys |= exc.names
        except converter.NeedsInputShapes:
            self._shape_key = True
        else:
            self.init_net, self.predict_net = self._nets[()][2]

    # ------------------------------------------------------------------ building
    def _key(self, feeds):
        values = tuple((name, feeds[name].dtype.str, feeds[name].shape, feeds[name].tobytes())
                       for name in sorted(self._value_keys))
        shapes = tuple((n, tuple(feeds[n].shape)) for n in self.input_names) if self._shape_key else ()
        return values + shapes

    def _build(self, key, feeds=None):
        while True:
            known = {n: feeds[n] for n in self._value_keys} if feeds is not None else None
            shapes = {n: feeds[n].shape for n in self.input_names} if (feeds is not None and self._shape_key) else None
            conv = converter.GraphConverter(self.model, self.device_option, known_inputs=known,
                                            input_shapes=shapes, opset_version=self.opset_version,
                                            specialise=True)
            try:
                init_net, predict_net = conv.convert()
            except converter.NeedsInputValues as exc:
                if feeds is None or not (exc.names - self._value_keys):
                    raise
                self._value_keys |= exc.names
                key = self._key(feeds)
                continue
            except converter.NeedsInputShapes:
                if feeds is None or self._shape_key:
                    raise
                self._shape_key = True
                key = self._key(feeds)
                continue
            break
        if not self._weights_done:
            self._base.run_operators_once(conv.weight_ops)
            self._weights_done = True
        ws = workspace.Workspace(f"onnx_{len(self._nets)}")
        ws.blobs.update(self._base.blobs)  # the same weight arrays, not copies
        folded = type(init_net)()
        folded.CopyFrom(init_net)
        del folded.op[:]
        folded.op.extend(conv.init_ops)
        if folded.op:
            for name, value in (known or {}).items():  # folded ops may read specialised inputs
                ws.feed_blob(name, value, device_option=self.device_option)
            ws.run_net_once(folded)
        for name in self.input_names:
            ws.blobs.setdefault(name, None)
        if len(self._nets) >= self.MAX_SPECIALISATIONS:
            self._nets.clear()
        if predict_net.op:
            ws.create_net(predict_net, overwrite=True)
        self._nets[key] = (ws, predict_net.name if predict_net.op else None, (init_net, predict_net))
        return key

    # ------------------------------------------------------------------ running
    def _feeds(self, inputs):
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise errors.NbcaffeError(f"ONNX model run: missing inputs {missing} (inputs: {self.input_names})")
            unknown = [n for n in inputs if n not in self.input_names]
            if unknown:
                raise errors.NbcaffeError(f"ONNX model run: unknown inputs {unknown} (inputs: {self.input_names})")
            values = [inputs[n] for n in self.input_names]
        else:
            if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
                inputs = [inputs]
            values = list(inputs)
            if len(values) != len(self.input_names):
                raise errors.NbcaffeError(f"ONNX model run: got {len(values)} inputs, the graph takes"
                                          f" {len(self.input_names)}: {self.input_names}")
        feeds = {}
        for vi, value in zip(self.input_infos, values):
            array = np.asarray(value)
            shape, dtype = value_info_shape(vi)
            if dtype is not None and array.dtype != dtype:
                raise errors.ShapeError(f"ONNX model input '{vi.name}': expected {dtype.name}, got {array.dtype.name}")
            if shape is not None and (len(shape) != array.ndim
                                      or any(d is not None and d != n for d, n in zip(shape, array.shape))):
                declared = tuple("?" if d is None else d for d in shape)
                raise errors.ShapeError(f"ONNX model input '{vi.name}': expected shape {declared}, got {array.shape}")
            feeds[vi.name] = array
        return feeds

    def run(self, inputs, **kwargs):
        """Run the model; returns the outputs (by index or by output name)."""
        feeds = self._feeds(inputs)
        key = self._key(feeds) if (self._value_keys or self._shape_key) else ()
        if key not in self._nets:
            key = self._build(key, feeds)
        ws, net_name, _ = self._nets[key]
        for name, array in feeds.items():
            ws.feed_blob(name, array, device_option=self.device_option)
        if net_name is not None:
            ws.run_net(net_name)
        outputs = []
        for name in self.output_names:
            if not ws.has_blob(name):
                raise OnnxConversionError(f"ONNX model output '{name}' was not produced by the converted net")
            outputs.append(ws.fetch_blob(name))
        return self._outputs_type(*outputs)


Caffe2Rep = NbcaffeRep  # Caffe2's name
