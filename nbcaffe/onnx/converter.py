"""ONNX graph -> Caffe2 NetDefs: the walk over the nodes, constants, shapes and the converter
registry.  The per-op converters live in ``convert_*.py`` and register with :func:`converter`.

How a graph becomes two NetDefs (Caffe2's split):

* **init net**: one GivenTensor*Fill per initializer, plus the ops of every node whose inputs
  are all constant (weights reshaped by Unsqueeze, ConstantOfShape fills, shape arithmetic on
  constants).  These run once.
* **predict net**: everything else, in graph order.

Many ONNX inputs are attributes in disguise (Slice's starts, Squeeze's axes, Pad's pads,
Split's sizes...).  A converter reads them with :meth:`Node.value`; constants are evaluated by
running the init ops built so far in a scratch workspace (nbcaffe's own kernels, so there is
no second implementation of any op).  When such an input is a *graph input*, conversion
raises :class:`NeedsInputValues`; :func:`onnx_graph_to_caffe2_net` turns that into an error
naming the node (pass ``known_inputs``), and the backend rep instead specialises the net on
the values it is fed (see ``backend_rep.py``).  Converters that need static dims (rank of a
Softmax input, SAME_LOWER pads, DepthToSpace) read them from ONNX shape inference; when a
graph input has symbolic dims the rep specialises on the fed shapes (:class:`NeedsInputShapes`).
"""

from __future__ import annotations

import numpy as np
import onnx

from nbcaffe import core, shape_inference, workspace
from nbcaffe.onnx import helper
from nbcaffe.onnx.helper import OnnxConversionError
from nbcaffe.proto import caffe2_pb2

# op_type -> [(since_version, function)], newest first
CONVERTERS: dict = {}
# ops whose outputs must never be computed once at conversion time (random draws)
NOT_FOLDABLE = {"Dropout", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                "Multinomial"}
ONNX_DOMAINS = ("", "ai.onnx")


def converter(*op_types, since=1):
    """Register ``fn(node)`` as the converter of ``op_types`` from opset ``since`` on."""

    def register(fn):
        for op_type in op_types:
            versions = CONVERTERS.setdefault(op_type, [])
            versions.append((since, fn))
            versions.sort(key=lambda v: -v[0])
        return fn

    return register


def find_converter(op_type, opset):
    for since, fn in CONVERTERS.get(op_type, ()):
        if since <= opset:
            return fn
    return None


def supported_ops() -> list:
    """ONNX op types (default domain) the backend converts."""
    _load_converters()
    return sorted(CONVERTERS)


def _load_converters():
    from nbcaffe.onnx import convert_elementwise, convert_nn, convert_reduce, convert_tensor  # noqa: F401


class NeedsInputValues(Exception):
    """Conversion needs the values of these graph inputs (attribute-like inputs)."""

    def __init__(self, names, where):
        super().__init__(f"{where}: needs the values of graph input(s) {sorted(names)}")
        self.names = set(names)


class NeedsInputShapes(Exception):
    """Conversion needs static dims that depend on the fed shapes of the graph inputs."""


class Node:
    """One ONNX node being converted: attributes, input facts and helpers that emit Caffe2 ops."""

    def __init__(self, graph, proto, index, opset, target):
        self.graph = graph
        self.proto = proto
        self.op_type = proto.op_type
        self.name = proto.name or f"{proto.op_type}_{index}"
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs = helper.attributes(proto)
        self.opset = opset
        self.target = target  # list the emitted OperatorDefs go to

    # ------------------------------------------------------------------ facts
    def where(self) -> str:
        return f"ONNX node '{self.name}' ({self.op_type}, opset {self.opset})"

    def describe_inputs(self) -> str:
        parts = []
        for name in self.inputs:
            if not name:
                parts.append("<absent>")
                continue
            shape, dtype = self.graph.info.get(name, (None, None))
            shape_text = "?" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
            parts.append(f"{name} {shape_text} {dtype.name if dtype is not None else '?'}")
        return "; ".join(parts) or "none"

    def error(self, message) -> OnnxConversionError:
        return OnnxConversionError(f"{self.where()}: {message}\n  inputs: {self.describe_inputs()}")

    def attr(self, name, default=None):
        return self.attrs.get(name, default)

    def has_input(self, i) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def has_output(self, j) -> bool:
        return j < len(self.outputs) and self.outputs[j] != ""

    def is_constant(self, i) -> bool:
        return self.has_input(i) and self.graph.is_constant(self.inputs[i])

    def value(self, i, what="") -> np.ndarray:
        """The value of input i, which must be a constant (or a graph input being specialised)."""
        name = self.inputs[i]
        g = self.graph
        if g.is_constant(name):
            return g.value_of(name)
        if name in g.graph_inputs:
            if g.specialise:
                raise NeedsInputValues({name}, self.where())
            raise self.error(f"input {i} '{name}'{' (' + what + ')' if what else ''} must be a constant for"
                             f" nbcaffe, but it is a graph input; give its value with known_inputs=")
        if g.specialise:
            # computed from graph inputs: specialise on the graph inputs it depends on
            sources = g.input_ancestors(name) - set(g.known_inputs)
            if sources:
                raise NeedsInputValues(sources, self.where())
            if g.has_symbolic_inputs:
                raise NeedsInputShapes(self.where())
        raise self.error(f"input {i} '{name}'{' (' + what + ')' if what else ''} must be a constant for nbcaffe,"
                         f" but it is computed at run time")

    def optional_value(self, i, what=""):
        return self.value(i, what) if self.has_input(i) else None

    def shape(self, name_or_index):
        """Static shape (ints or None per dim) of a value, or None when its rank is unknown."""
        name = self.inputs[name_or_index] if isinstance(name_or_index, int) else name_or_index
        return self.graph.info.get(name, (None, None))[0]

    def dtype(self, name_or_index):
        name = self.inputs[name_or_index] if isinstance(name_or_index, int) else name_or_index
        dtype = self.graph.info.get(name, (None, None))[1]
        if dtype is None and self.graph.is_constant(name):
            dtype = self.graph.value_of(name).dtype
        return dtype

    def rank(self, name_or_index) -> int:
        shape = self.shape(name_or_index)
        if shape is None:
            self._specialise_for_shapes()
            raise self.error(f"the rank of '{self._name(name_or_index)}' is unknown (ONNX shape inference could not"
                             f" find it); give the graph inputs static shapes")
        return len(shape)

    def static_shape(self, name_or_index) -> tuple:
        shape = self.shape(name_or_index)
        if shape is None or any(d is None for d in shape):
            self._specialise_for_shapes()
            raise self.error(f"needs the static shape of '{self._name(name_or_index)}', which ONNX shape inference"
                             f" gives as {shape}")
        return tuple(shape)

    def _specialise_for_shapes(self):
        """Unknown static dims: with specialisation allowed, first fix the input shapes, then
        the values of the integer graph inputs (shape arithmetic that shape inference can only
        follow through constants)."""
        g = self.graph
        if not g.specialise:
            return
        if g.has_symbolic_inputs:
            raise NeedsInputShapes(self.where())
        ints = {n for n in g.graph_inputs if n not in g.known_inputs and g.info.get(n, (None, None))[1] is not None
                and g.info[n][1].kind in "iu"}
        if ints:
            raise NeedsInputValues(ints, self.where())

    def _name(self, name_or_index):
        return self.inputs[name_or_index] if isinstance(name_or_index, int) else name_or_index

    # ------------------------------------------------------------------ emitting
    def op(self, op_type, inputs, outputs, **args):
        """Append a Caffe2 op; returns its first output name."""
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        args = {k: v for k, v in args.items() if v is not None}
        op = core.CreateOperator(op_type, inputs, outputs, name=self.name, **args)
        self.target.append(op)
        return outputs[0] if outputs else None

    def tmp(self, tag="t") -> str:
        return self.graph.fresh(f"{self.outputs[0] if self.outputs and self.outputs[0] else self.name}_{tag}")

    def const(self, array, tag="c", dtype=None) -> str:
        """A new blob holding ``array`` (init net); returns its name."""
        array = np.asarray(array, dtype=dtype)
        name = self.tmp(tag)
        self.graph.add_constant(name, array)
        return name

    def set_constant(self, j, array):
        """Output j is the constant ``array`` (written by the init net)."""
        self.graph.add_constant(self.outputs[j], np.asarray(array))


class GraphConverter:
    """Converts one ONNX ModelProto; see the module notes."""

    def __init__(self, model, device_option=None, known_inputs=None, input_shapes=None, opset_version=None,
                 specialise=False):
        _load_converters()
        if isinstance(model, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(model))
        self.model = model
        self.graph_proto = model.graph
        self.opset = int(opset_version) if opset_version else _default_opset(model)
        self.device_option = device_option
        self.specialise = specialise
        self.known_inputs = {k: np.asarray(v) for k, v in (known_inputs or {}).items()}
        g = self.graph_proto
        self.initializers = {t.name: t for t in g.initializer}
        self.graph_inputs = [vi.name for vi in g.input if vi.name not in self.initializers]
        self.graph_outputs = [vi.name for vi in g.output]
        self.info = {}
        self.has_symbolic_inputs = False
        self._collect_info(input_shapes or {})
        self.names = set(self.initializers) | {vi.name for vi in g.input} | set(self.graph_outputs)
        for node in g.node:
            self.names.update(node.input)
            self.names.update(node.output)
        self.weight_ops = []  # initializer fills
        self.init_ops = []  # folded constant nodes
        self.ops = []  # predict net
        self.constants = set(self.initializers) | set(self.known_inputs)
        self.values = dict(self.known_inputs)
        self._scratch = None
        self._scratch_done = 0
        self._counter = 0

    # ------------------------------------------------------------------ setup
    def _collect_info(self, input_shapes):
        g = self.graph_proto
        model = self.model
        for vi in g.input:
            if vi.name in input_shapes and vi.name not in self.initializers:
                dims = vi.type.tensor_type.shape.dim
                shape = tuple(int(d) for d in input_shapes[vi.name])
                if len(dims) == len(shape) and any(not d.HasField("dim_value") for d in dims):
                    if model is self.model:
                        model = _copy_model(self.model)
                    target = next(v for v in model.graph.input if v.name == vi.name)
                    for d, n in zip(target.type.tensor_type.shape.dim, shape):
                        d.ClearField("dim_param")
                        d.dim_value = n
        if self.known_inputs:  # known graph inputs become initializers, so inference sees values
            if model is self.model:
                model = _copy_model(self.model)
            keep = [vi for vi in model.graph.input if vi.name not in self.known_inputs]
            known_vis = [vi for vi in model.graph.input if vi.name in self.known_inputs]
            del model.graph.input[:]
            model.graph.input.extend(keep + known_vis)
            for vi in known_vis:
                model.graph.initializer.append(onnx.numpy_helper.from_array(self.known_inputs[vi.name], vi.name))
        for vi in model.graph.input:
            shape, _ = helper.value_info_shape(vi)
            if vi.name not in self.initializers and vi.name not in self.known_inputs \
                    and (shape is None or any(d is None for d in shape)):
                self.has_symbolic_inputs = True
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # shape inference is a help, not a requirement
            inferred = model
        ig = inferred.graph
        for vi in list(ig.input) + list(ig.value_info) + list(ig.output):
            shape, dtype = helper.value_info_shape(vi)
            old_shape, old_dtype = self.info.get(vi.name, (None, None))
            self.info[vi.name] = (shape if shape is not None else old_shape,
                                  dtype if dtype is not None else old_dtype)
        for t in g.initializer:
            if t.data_type in helper.SUPPORTED_ELEM_TYPES:
                self.info[t.name] = (tuple(t.dims), helper.np_dtype(t.data_type))

    def input_ancestors(self, name) -> set:
        """Graph inputs that the value ``name`` is computed from."""
        if not hasattr(self, "_producers"):
            self._producers = {o: node for node in self.graph_proto.node for o in node.output if o}
        seen, stack, found = set(), [name], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in self.graph_inputs:
                found.add(n)
            elif n in self._producers:
                stack.extend(i for i in self._producers[n].input if i)
        return found

    def fresh(self, base) -> str:
        base = base.replace(" ", "_")
        name = base
        while name in self.names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self.names.add(name)
        return name

    # ------------------------------------------------------------------ constants
    def is_constant(self, name) -> bool:
        return name in self.constants

    def add_constant(self, name, array):
        self.names.add(name)
        self.values[name] = array
        self.constants.add(name)
        self.info[name] = (tuple(array.shape), array.dtype)
        self.init_ops.extend(helper.fill_ops(name, array, self.fresh(name + "_wide")))

    def value_of(self, name) -> np.ndarray:
        if name in self.values:
            return self.values[name]
        if name in self.initializers:
            value = helper.tensor_to_array(self.initializers[name])
            self.values[name] = value
            return value
        # produced by folded init ops: run the ones not run yet in a scratch workspace
        if self._scratch is None:
            self._scratch = workspace.Workspace("_onnx_constant_folding")
        ws = self._scratch
        for op in self.init_ops[self._scratch_done:]:
            for blob in op.input:
                if blob not in ws.blobs:
                    ws.feed_blob(blob, self.value_of(blob))
            ws.run_operator_once(_on_cpu(op))
        self._scratch_done = len(self.init_ops)
        value = ws.fetch_blob(name)
        self.values[name] = value
        return value

    # ------------------------------------------------------------------ walk
    def convert(self):
        g = self.graph_proto
        for vi in g.input:
            if vi.name not in self.initializers and vi.name not in self.known_inputs:
                shape, dtype = helper.value_info_shape(vi)
                if vi.type.HasField("tensor_type") and dtype is None:
                    raise OnnxConversionError(
                        f"graph input '{vi.name}': element type "
                        f"{helper.elem_type_name(vi.type.tensor_type.elem_type)} is not supported by nbcaffe")
                if not vi.type.HasField("tensor_type"):
                    raise OnnxConversionError(f"graph input '{vi.name}': only tensor inputs are supported"
                                              f" (got {vi.type.WhichOneof('value')})")
        for name, tensor in self.initializers.items():
            array = helper.tensor_to_array(tensor)  # onnx.load already read external data
            self.values[name] = array
            self.weight_ops.extend(helper.fill_ops(name, array, self.fresh(name + "_wide")))
        if g.sparse_initializer:
            raise OnnxConversionError("sparse initializers are not supported")
        for index, proto in enumerate(g.node):
            self.convert_node(proto, index)
        return self.nets()

    def convert_node(self, proto, index):
        if proto.domain not in ONNX_DOMAINS:
            raise OnnxConversionError(f"ONNX node '{proto.name or index}' ({proto.op_type}): operator domain"
                                      f" '{proto.domain}' is not supported (only the default ONNX domain)")
        fn = find_converter(proto.op_type, self.opset)
        if fn is None:
            known = "" if proto.op_type not in CONVERTERS else \
                f" (nbcaffe converts it from opset {min(v for v, _ in CONVERTERS[proto.op_type])})"
            raise OnnxConversionError(f"ONNX node '{proto.name or index}': operator {proto.op_type} (opset"
                                      f" {self.opset}) is not supported by nbcaffe{known}")
        present = [i for i in proto.input if i]
        foldable = proto.op_type not in NOT_FOLDABLE and all(self.is_constant(i) for i in present)
        node = Node(self, proto, index, self.opset, self.init_ops if foldable else self.ops)
        first = len(node.target)
        fn(node)
        if foldable:
            self.constants.update(o for o in proto.output if o)
        self._propagate_shapes(node.target[first:], [o for o in proto.output if o])

    def _propagate_shapes(self, ops, wanted):
        """Fill in static shapes that ONNX shape inference could not find (e.g. a Split whose
        sizes are computed) with nbcaffe's own inference over the ops just emitted."""
        if all(_static(self.info.get(n, (None, None))[0]) for n in wanted):
            return
        for op in ops:
            known = [self.info.get(n, (None, None)) for n in op.input]
            if not all(_static(shape) and dtype is not None for shape, dtype in known):
                continue
            try:
                shapes, dtypes = shape_inference.infer_op(op, [s for s, _ in known], [d for _, d in known])
            except Exception:  # an op whose shapes depend on values, or that will fail at run time
                continue
            for name, shape, dtype in zip(op.output, shapes, dtypes):
                if shape is not None and not _static(self.info.get(name, (None, None))[0]):
                    self.info[name] = (tuple(int(d) for d in shape), np.dtype(dtype))

    def nets(self):
        """(init_net, predict_net) NetDefs."""
        name = self.graph_proto.name or "onnx_graph"
        init_net = caffe2_pb2.NetDef()
        init_net.name = f"{name}_init"
        init_net.op.extend(self.weight_ops + self.init_ops)
        predict_net = caffe2_pb2.NetDef()
        predict_net.name = f"{name}_predict"
        predict_net.op.extend(self.ops)
        predict_net.external_input.extend(self.graph_inputs + list(self.initializers))
        predict_net.external_output.extend(self.graph_outputs)
        for net in (init_net, predict_net):
            if self.device_option is not None:
                net.device_option.CopyFrom(self.device_option)
        return init_net, predict_net


def _static(shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _on_cpu(op):
    if not op.HasField("device_option"):
        return op
    copy = caffe2_pb2.OperatorDef()
    copy.CopyFrom(op)
    copy.ClearField("device_option")
    return copy


def _copy_model(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _default_opset(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ONNX_DOMAINS:
            return int(imp.version)
    if not model.opset_import:
        return 1
    raise OnnxConversionError("the model imports no default-domain ONNX opset")


def onnx_graph_to_caffe2_net(model, device="CPU", opset_version=None, known_inputs=None, input_shapes=None):
    """Convert an ONNX ModelProto into ``(init_net, predict_net)`` Caffe2 NetDefs.

    Args:
        model: ``onnx.ModelProto`` (or its serialized bytes).
        device: 'CPU' or 'CUDA[:id]' (the nets' DeviceOption).
        opset_version: override the model's default-domain opset.
        known_inputs: ``{graph input: array}`` for graph inputs that ONNX treats as attributes
            (a Slice's starts, a Squeeze's axes) when they are not initializers.
        input_shapes: ``{graph input: shape}`` to fix symbolic dims for converters that need them.

    Example:
        >>> init_net, predict_net = onnx_graph_to_caffe2_net(onnx.load("model.onnx"))  # doctest: +SKIP
    """
    device_option = helper.device_option_for(device) if isinstance(device, str) else device
    conv = GraphConverter(model, device_option, known_inputs=known_inputs, input_shapes=input_shapes,
                          opset_version=opset_version)
    return conv.convert()
