"""Caffe2 NetDefs -> ONNX (Caffe2's ``caffe2.python.onnx.frontend``).

    >>> model = caffe2_net_to_onnx_model(predict_net, init_net,
    ...                                  value_info={"data": (onnx.TensorProto.FLOAT, (1, 3, 224, 224))})
    >>> onnx.checker.check_model(model, full_check=True)                    # doctest: +SKIP

The init net is run (CPU, a scratch workspace) and every blob it fills becomes an ONNX
initializer.  nbcaffe's static shape inference then walks the predict net from the input
shapes in ``value_info``, because several Caffe2 ops only map to ONNX once shapes are known
(FC on >2-D inputs, legacy ``broadcast=1, axis`` arithmetic, Caffe2's flattening Softmax,
legacy pooling padding).  Each op goes through an exporter registered in ``export_*.py``.
The model targets ONNX opset :data:`OPSET` (IR version the installed ``onnx`` pairs with it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper as oh
from onnx import numpy_helper

from nbcaffe import errors, registry, schema, shape_inference, utils, workspace
from nbcaffe.onnx.helper import OnnxConversionError, onnx_elem_type
from nbcaffe.proto import caffe2_pb2

OPSET = 18
EXPORTERS: dict = {}


def exporter(*op_types):
    """Register ``fn(ctx, op)`` as the ONNX exporter of Caffe2 ``op_types``."""

    def register(fn):
        for op_type in op_types:
            EXPORTERS[op_type] = fn
        return fn

    return register


def exportable_ops() -> list:
    _load_exporters()
    return sorted(EXPORTERS)


def _load_exporters():
    from nbcaffe.onnx import export_nn, export_tensor  # noqa: F401


class ExportContext:
    """State of one export: constants, static shapes, emitted nodes; helpers for exporters."""

    def __init__(self, predict_net, init_values, shapes, dtypes, opset):
        self.net = predict_net
        self.values = dict(init_values)  # blob -> array known at export time (initializers)
        self.shapes = shapes
        self.dtypes = dtypes
        self.opset = opset
        self.nodes = []
        self.initializers = {}
        self.names = set(init_values) | set(predict_net.external_input) | set(predict_net.external_output)
        for op in predict_net.op:
            self.names.update(op.input)
            self.names.update(op.output)
        self.consumed = set(predict_net.external_output)  # blobs something reads
        for op in predict_net.op:
            self.consumed.update(op.input)
        self._counter = 0
        self.op = None
        self.op_index = 0

    # ------------------------------------------------------------------ facts
    def where(self) -> str:
        op = self.op
        return f"Caffe2 op #{self.op_index} {op.type}" + (f" (name '{op.name}')" if op.name else "")

    def describe_inputs(self) -> str:
        parts = []
        for name in self.op.input:
            shape = self.shapes.get(name)
            dtype = self.dtypes.get(name)
            parts.append(f"{name} {tuple(shape) if shape is not None else '?'} "
                         f"{np.dtype(dtype).name if dtype is not None else '?'}")
        return "; ".join(parts) or "none"

    def error(self, message) -> OnnxConversionError:
        return OnnxConversionError(f"{self.where()}: {message}\n  inputs: {self.describe_inputs()}")

    def shape(self, name):
        shape = self.shapes.get(name)
        return None if shape is None else tuple(int(d) for d in shape)

    def static_shape(self, name) -> tuple:
        shape = self.shape(name)
        if shape is None:
            raise self.error(f"needs the static shape of '{name}'; give the net's inputs shapes in value_info")
        return shape

    def rank(self, name) -> int:
        return len(self.static_shape(name))

    def dtype(self, name):
        dtype = self.dtypes.get(name)
        return np.dtype(dtype) if dtype is not None else None

    def value(self, name):
        return self.values.get(name)

    def args(self, op):
        """The op's arguments parsed by its schema (defaults filled in; ``.given`` = set ones)."""
        record = registry.get_schema(op.type)
        cls = record.op_class
        return schema.parse_args(cls.declared_args, op, self.where(), cls.strict_args, cls.ignored_args)

    # ------------------------------------------------------------------ emitting
    def fresh(self, base) -> str:
        name = base
        while name in self.names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self.names.add(name)
        return name

    def tmp(self, tag="t") -> str:
        base = self.op.output[0] if self.op is not None and self.op.output else "onnx"
        return self.fresh(f"{base}_{tag}")

    def node(self, op_type, inputs, outputs=None, **attrs):
        """Append an ONNX node; ``outputs`` defaults to one fresh name.  Returns outputs[0]."""
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        outputs = [self.tmp(op_type.lower())] if outputs is None else \
            ([outputs] if isinstance(outputs, str) else list(outputs))
        attrs = {k: v for k, v in attrs.items() if v is not None}
        name = self.fresh(f"{self.op.name or self.op.type}_{len(self.nodes)}") if self.op is not None else None
        self.nodes.append(oh.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def const(self, array, tag="c", dtype=None) -> str:
        """A new initializer holding ``array``; returns its name."""
        array = np.asarray(array, dtype=dtype)
        name = self.tmp(tag)
        self.initializers[name] = array
        self.values[name] = array
        return name

    def ints(self, values, tag="ints") -> str:
        return self.const(np.asarray(list(values), np.int64), tag)


def _run_init_net(init_net):
    """{blob: array} for every tensor the init net fills (CPU, scratch workspace)."""
    if init_net is None:
        return {}
    ws = workspace.Workspace("_onnx_export")
    cpu_net = caffe2_pb2.NetDef()
    cpu_net.CopyFrom(init_net)
    cpu_net.ClearField("device_option")
    for op in cpu_net.op:
        op.ClearField("device_option")
    ws.run_net_once(cpu_net)
    values = {}
    for op in cpu_net.op:
        for name in op.output:
            value = ws.blobs.get(name)
            if isinstance(value, np.ndarray) and value.dtype != object:
                values[name] = value
    return values


def _normalise_value_info(value_info) -> dict:
    """{name: (numpy dtype, shape)} from Caffe2-style {name: (onnx elem type | dtype, shape)}."""
    out = {}
    for name, (elem, shape) in (value_info or {}).items():
        if isinstance(elem, (int, np.integer)) and not isinstance(elem, bool):
            dtype = onnx.helper.tensor_dtype_to_np_dtype(int(elem))
        else:
            dtype = np.dtype(elem)
        out[str(name)] = (np.dtype(dtype), tuple(int(d) for d in shape))
    return out


def _ssa(net, defined):
    """A copy of ``net`` in single-assignment form (ONNX requires it; Caffe2 nets write blobs in
    place).  Every write but a blob's last gets a versioned name ``<blob>_<k>``; the last write
    keeps the name unless the blob was also an input or parameter.  Returns (net, the names of
    the external outputs in the copy)."""
    writes = {}
    for op in net.op:
        for o in op.output:
            writes[o] = writes.get(o, 0) + 1
    taken = set(defined) | set(net.external_input) | set(writes)
    for op in net.op:
        taken.update(op.input)
    current, seen = {}, {}
    out = caffe2_pb2.NetDef()
    out.CopyFrom(net)
    for op in out.op:
        op.input[:] = [current.get(i, i) for i in op.input]
        for j, o in enumerate(op.output):
            seen[o] = seen.get(o, 0) + 1
            is_last = seen[o] == writes[o]
            if is_last and o not in defined and o not in net.external_input:
                current[o] = o
                continue
            k, name = seen[o], f"{o}_{seen[o]}"
            while name in taken:
                k += 1
                name = f"{o}_{k}"
            taken.add(name)
            op.output[j] = name
            current[o] = name
    outputs = list(net.external_output)
    if not outputs:  # no declared outputs: every blob that is written and never read after
        consumed = set()
        for op in net.op:
            consumed.update(op.input)
        outputs = list(dict.fromkeys(o for op in net.op for o in op.output if o not in consumed))
    return out, [current.get(o, o) for o in outputs]


def _infer(predict_net, values, value_info):
    ws = workspace.Workspace("_onnx_export_shapes")
    for name, value in values.items():
        ws.blobs[name] = value
    for name, (dtype, shape) in value_info.items():  # shape/dtype carriers, no memory
        ws.blobs[name] = np.broadcast_to(np.zeros((), dtype), shape)
    try:
        shapes, types = shape_inference.infer_nets(ws, [predict_net])
    except errors.NbcaffeError as exc:
        raise OnnxConversionError(f"ONNX export of net '{predict_net.name}': shape inference failed: {exc}") from None
    dtypes = {}
    for name, t in types.items():
        try:
            dtypes[name] = utils.dtype_of(t)
        except errors.ShapeError:
            pass
    return {n: tuple(s) for n, s in shapes.items()}, dtypes


def caffe2_net_to_onnx_graph(predict_net, init_net=None, value_info=None, opset_version=OPSET, params=None):
    """Caffe2 predict (+ init) NetDef -> ``onnx.GraphProto`` (see :func:`caffe2_net_to_onnx_model`)."""
    _load_exporters()
    if hasattr(predict_net, "Proto") and callable(predict_net.Proto):
        predict_net = predict_net.Proto()
    if init_net is not None and hasattr(init_net, "Proto") and callable(init_net.Proto):
        init_net = init_net.Proto()
    value_info = _normalise_value_info(value_info)
    init_values = _run_init_net(init_net)
    init_values.update({str(k): np.asarray(v) for k, v in (params or {}).items()})
    for name in value_info:  # an input placeholder the init net fills (Caffe2's translator does)
        init_values.pop(name, None)
    predict_net, output_names = _ssa(predict_net, set(init_values) | set(value_info))
    shapes, dtypes = _infer(predict_net, init_values, value_info)
    ctx = ExportContext(predict_net, init_values, shapes, dtypes, opset_version)
    ctx.consumed.update(output_names)
    produced = set()
    for index, op in enumerate(predict_net.op):
        fn = EXPORTERS.get(op.type)
        ctx.op, ctx.op_index = op, index
        if fn is None:
            raise ctx.error(f"no ONNX export for Caffe2 op type {op.type}{errors.did_you_mean(op.type, EXPORTERS)}")
        fn(ctx, op)
        produced.update(op.output)
    ctx.op = None
    graph_inputs = []
    used_inputs = {i for node in ctx.nodes for i in node.input}
    for name in predict_net.external_input:
        if name in init_values or name in produced or name not in used_inputs:
            continue
        if name not in value_info:
            raise OnnxConversionError(f"ONNX export: external input '{name}' has no initial value in the init net and"
                                      f" no entry in value_info (give value_info={{'{name}': (dtype, shape)}})")
        dtype, shape = value_info[name]
        graph_inputs.append(oh.make_tensor_value_info(name, onnx_elem_type(dtype), shape))
    initializers = []
    for name, array in list(init_values.items()) + list(ctx.initializers.items()):
        if name in used_inputs and name not in produced:
            initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
    outputs = []
    node_outputs = {o for node in ctx.nodes for o in node.output}
    for name in output_names:
        if name not in node_outputs:  # a parameter or input as output: ONNX wants a node making it
            source = ctx.fresh(f"{name}_value")
            for t in initializers:
                if t.name == name:
                    t.name = source
            if name in init_values and not any(t.name == source for t in initializers):
                initializers.append(numpy_helper.from_array(np.asarray(init_values[name], order="C"), source))
            ctx.nodes.append(oh.make_node("Identity", [source], [name], name=ctx.fresh(f"{name}_identity")))
        dtype, shape = dtypes.get(name), shapes.get(name)
        if dtype is None and name in init_values:
            dtype, shape = init_values[name].dtype, init_values[name].shape
        elem = onnx_elem_type(dtype) if dtype is not None else onnx.TensorProto.UNDEFINED
        outputs.append(oh.make_tensor_value_info(name, elem, shape))
    graph = oh.make_graph(ctx.nodes, predict_net.name or "caffe2_net", graph_inputs, outputs, initializers)
    if any(o.type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED or not o.type.tensor_type.HasField("shape")
           for o in graph.output):
        _fill_output_types(graph, opset_version)
    return graph


def _fill_output_types(graph, opset):
    """Output types nbcaffe's inference could not give (value-dependent shapes): ONNX's."""
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    known = {vi.name: vi for vi in list(inferred.value_info) + list(inferred.output)}
    for out in graph.output:
        t = out.type.tensor_type
        if (t.elem_type == onnx.TensorProto.UNDEFINED or not t.HasField("shape")) and out.name in known:
            out.type.CopyFrom(known[out.name].type)


def caffe2_net_to_onnx_model(predict_net, init_net=None, value_info=None, opset_version=OPSET,
                             producer_name="nbcaffe", params=None):
    """Caffe2 predict net (+ init net with its parameters) -> ``onnx.ModelProto``.

    Args:
        predict_net: ``caffe2_pb2.NetDef`` (or a core.Net).
        init_net: NetDef filling the parameters (run once at export; its blobs become
            initializers), or None.
        value_info: ``{external input: (elem type, shape)}`` for the graph inputs; elem type is
            an ONNX ``TensorProto`` type or a NumPy dtype.  A blob listed here is an input even
            when the init net fills it (Caffe2's translator writes such placeholders).
        opset_version: default-domain opset of the model (18).
        params: ``{blob: array}`` parameter values to use instead of (or beside) the init
            net's, e.g. the trained values from a workspace (random fills in an init net give
            new values every time it runs).

    Returns a model that ``onnx.checker.check_model(model, full_check=True)`` accepts.
    """
    graph = caffe2_net_to_onnx_graph(predict_net, init_net, value_info, opset_version, params)
    model = oh.make_model(graph, producer_name=producer_name, opset_imports=[oh.make_opsetid("", opset_version)])
    model.ir_version = min(model.ir_version, _ir_version_for(opset_version))
    return model


def _ir_version_for(opset) -> int:
    """The lowest IR version that carries ``opset`` (so older runtimes load the model)."""
    return oh.find_min_ir_version_for([oh.make_opsetid("", opset)])


class Caffe2Frontend:
    """Caffe2's ``caffe2.python.onnx.frontend.Caffe2Frontend`` spelling of this module."""

    target_opset_version = OPSET
    caffe2_net_to_onnx_graph = staticmethod(caffe2_net_to_onnx_graph)
    caffe2_net_to_onnx_model = staticmethod(caffe2_net_to_onnx_model)
