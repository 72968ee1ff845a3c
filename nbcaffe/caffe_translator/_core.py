"""The translation driver: layer registry, per-model context, TranslateModel.

A layer translator is a function ``fn(layer, pretrained_blobs, is_test, **kwargs) ->
(ops, params)`` registered with ``TranslatorRegistry.Register("<Caffe type>")`` -- Caffe2's
contract, so translators written for Caffe2 register unchanged.  nbcaffe passes more in
``kwargs``: ``ctx`` (the :class:`Translation`: static shapes, unique names, parameter
tensors, errors naming the layer), ``net`` and ``net_params`` (what has been translated so
far) and ``input_dims``.

After each layer the driver infers the shapes of the new ops with nbcaffe's shape inference
(so a later layer can ask ``ctx.shape(blob)``), and any op whose schema cannot run in place
on a pair the Caffe layer used in place writes to a fresh blob followed by a Copy.
"""

from __future__ import annotations

import logging

import numpy as np

from nbcaffe import errors, registry, shape_inference, utils
from nbcaffe.proto import caffe2_pb2, caffe_pb2

log = logging.getLogger("nbcaffe.caffe_translator")


class CaffeTranslationError(errors.NbcaffeError, ValueError):
    """A Caffe model that cannot be translated: the message names the layer and its type."""


class UnsupportedLayerError(CaffeTranslationError, errors.UnsupportedOperatorError):
    """A layer type (or a setting of it) that the translator does not handle."""


class CaffeFormatError(CaffeTranslationError, errors.ProtoError):
    """A prototxt or caffemodel that does not parse, or whose stored blobs are inconsistent."""


# ------------------------------------------------------------------------- net state rules

def state_meets_rule(state, rule) -> bool:
    """Caffe's StateMeetsRule: every field the rule sets must match the net state."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(state, layer) -> bool:
    """Caffe's inclusion rule: no include rules and no exclude rule met, or an include rule met."""
    if layer.include:
        return any(state_meets_rule(state, rule) for rule in layer.include)
    return not any(state_meets_rule(state, rule) for rule in layer.exclude)


# ------------------------------------------------------------------------- blobs

def blob_to_array(blob, where: str) -> np.ndarray:
    """A Caffe BlobProto as a float32 array (legacy num/channels/height/width or ``shape``)."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    if len(blob.double_data) and not len(blob.data):
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.array(blob.data, dtype=np.float32)
    count = int(np.prod(shape, dtype=np.int64))
    if values.size != count:
        raise CaffeFormatError(f"{where}: the blob's shape {list(shape)} needs {count} values but it stores"
                               f" {values.size}")
    return values.reshape(shape)


# ------------------------------------------------------------------------- registry

class TranslatorRegistry:
    """Caffe layer type -> translator function (Caffe2's class of the same name)."""

    registry_: dict = {}

    @classmethod
    def Register(cls, layer_type):
        """Decorator registering ``fn(layer, pretrained_blobs, is_test, **kwargs) -> (ops, params)``."""

        def wrapper(func):
            cls.registry_[layer_type] = func
            return func

        return wrapper

    @classmethod
    def TranslateLayer(cls, layer, pretrained_blobs, is_test, **kwargs):
        """(list of OperatorDef, list of TensorProto) for one LayerParameter."""
        func = cls.registry_.get(layer.type)
        if func is None:
            known = sorted(cls.registry_)
            raise UnsupportedLayerError(
                f"Caffe layer '{layer.name}' of type '{layer.type}' is not supported by the translator (no"
                f" translator for type '{layer.type}').{errors.did_you_mean(layer.type, known)} Supported types:"
                f" {', '.join(known)}.")
        ops, params = func(layer, pretrained_blobs, is_test, **kwargs)
        if ops is None:
            ops = []
        elif isinstance(ops, caffe2_pb2.OperatorDef):
            ops = [ops]
        return list(ops), list(params or [])

    @classmethod
    def TranslateModel(cls, caffe_net, pretrained_net, is_test=True, net_state=None, remove_legacy_pad=False,
                       input_dims=None):
        return translate_model(caffe_net, pretrained_net, is_test=is_test, net_state=net_state,
                               remove_legacy_pad=remove_legacy_pad, input_dims=input_dims)


# ------------------------------------------------------------------------- the context

class Translation:
    """What the translators of one model share: static shapes, used names, options."""

    def __init__(self, is_test, remove_legacy_pad, used_names):
        self.is_test = bool(is_test)
        self.remove_legacy_pad = bool(remove_legacy_pad)
        self.shapes: dict = {}
        self.dtypes: dict = {}
        self.used = set(used_names)
        self.layer = None
        self.fold_scale = None  # set by the driver: the Scale layer folded into this BatchNorm

    # ---- errors
    def where(self, layer=None) -> str:
        layer = layer if layer is not None else self.layer
        if layer is None:
            return "Caffe net"
        return f"Caffe layer '{layer.name}' (type '{layer.type}')"

    def error(self, message, layer=None) -> CaffeTranslationError:
        return CaffeTranslationError(f"{self.where(layer)}: {message}")

    def unsupported(self, message, layer=None) -> UnsupportedLayerError:
        return UnsupportedLayerError(f"{self.where(layer)} is not supported: {message}")

    # ---- shapes
    def has_shape(self, blob) -> bool:
        return blob in self.shapes

    def shape(self, blob) -> tuple:
        """The static shape of ``blob``; an error naming the layer when it is unknown."""
        try:
            return self.shapes[blob]
        except KeyError:
            raise self.error(f"needs the shape of blob '{blob}', which is unknown here: declare the net's input"
                             f" shapes (input_dim / input_shape / an Input layer) or pass input_dims") from None

    def rank(self, blob) -> int:
        return len(self.shape(blob))

    def axis(self, axis, blob, what="axis") -> int:
        """Caffe's CanonicalAxisIndex of ``axis`` for ``blob`` (negative counts from the end)."""
        if axis >= 0 and not self.has_shape(blob):
            return int(axis)
        rank = self.rank(blob)
        if not -rank <= axis < rank:
            raise self.error(f"{what} {axis} is out of range for blob '{blob}' of shape {self.shape(blob)}")
        return int(axis) % rank

    # ---- names and tensors
    def fresh(self, base) -> str:
        """A blob name not used anywhere in the Caffe net or the translation so far."""
        name = base
        k = 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name

    def tensor(self, base, array) -> caffe2_pb2.TensorProto:
        """A float32 parameter TensorProto under a fresh name derived from ``base``."""
        array = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
        name = self.fresh(base)
        self.shapes[name] = tuple(array.shape)
        self.dtypes[name] = np.dtype(np.float32)
        return utils.NumpyArrayToCaffe2Tensor(array, name)


def make_op(op_type, inputs, outputs, **args) -> caffe2_pb2.OperatorDef:
    """An OperatorDef with arguments in Caffe2's encoding (None values are left out)."""
    op = caffe2_pb2.OperatorDef()
    op.type = op_type
    op.input.extend(inputs)
    op.output.extend(outputs)
    for key, value in args.items():
        if value is not None:
            op.arg.append(utils.MakeArgument(key, value))
    return op


# ------------------------------------------------------------------------- inputs

DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "VideoData",
               "AnnotatedData")


def declared_inputs(caffe_net, layers):
    """[(name, shape or None)] of the net's inputs: legacy net-level inputs, Input layers,
    then data-layer tops (their shapes are not in the prototxt)."""
    found = []
    names = list(caffe_net.input)
    if caffe_net.input_shape:
        if len(caffe_net.input_shape) != len(names):
            raise CaffeFormatError(f"Caffe net: {len(names)} inputs {names} but {len(caffe_net.input_shape)}"
                                   f" input_shape entries")
        found += [(n, tuple(int(d) for d in s.dim)) for n, s in zip(names, caffe_net.input_shape)]
    elif caffe_net.input_dim:
        dims = [int(d) for d in caffe_net.input_dim]
        if len(dims) != 4 * len(names):
            raise CaffeFormatError(f"Caffe net: {len(names)} inputs {names} need {4 * len(names)} input_dim values"
                                   f" (num, channels, height, width each), got {len(dims)}")
        found += [(n, tuple(dims[4 * i:4 * i + 4])) for i, n in enumerate(names)]
    else:
        found += [(n, None) for n in names]
    for layer in layers:
        if layer.type == "Input":
            shapes = list(layer.input_param.shape)
            if len(shapes) not in (0, 1, len(layer.top)):
                raise CaffeFormatError(f"Caffe layer '{layer.name}' (type 'Input'): {len(layer.top)} tops need 1 or"
                                       f" {len(layer.top)} shapes, got {len(shapes)}")
            for i, top in enumerate(layer.top):
                shape = shapes[i if len(shapes) > 1 else 0] if shapes else None
                found.append((top, tuple(int(d) for d in shape.dim) if shape is not None else None))
        elif layer.type in DATA_LAYERS:
            found += [(top, None) for top in layer.top]
    return found


def _input_dims_map(input_dims, inputs):
    if input_dims is None or (not isinstance(input_dims, dict) and len(input_dims) == 0):
        return {}
    if isinstance(input_dims, dict):
        unknown = [k for k in input_dims if k not in [n for n, _ in inputs]]
        if unknown:
            raise CaffeTranslationError(f"input_dims names {unknown}, which are not inputs of the Caffe net"
                                        f" (inputs: {[n for n, _ in inputs]})")
        return {k: tuple(int(d) for d in v) for k, v in input_dims.items()}
    if not inputs:
        raise CaffeTranslationError("input_dims given but the Caffe net declares no input")
    return {inputs[0][0]: tuple(int(d) for d in input_dims)}


# ------------------------------------------------------------------------- driver

def _allowed_inplace(op_type, i, j) -> bool:
    cls = registry.get_schema(op_type).op_class
    rule = cls.inplace
    if callable(rule):
        return bool(rule(i, j))
    return rule.get(i) == j or cls.enforce_inplace.get(i) == j


def _split_forbidden_inplace(ops, ctx):
    """Ops that write over one of their inputs where the schema forbids it write to a fresh
    blob instead, followed by a Copy back to the Caffe name (Caffe ran such layers in place)."""
    out = []
    for op in ops:
        copies = []
        if op.type in registry.SCHEMAS:
            for j, name in enumerate(op.output):
                if any(inp == name and not _allowed_inplace(op.type, i, j) for i, inp in enumerate(op.input)):
                    temp = ctx.fresh(f"{name}_{op.type.lower()}_out")
                    op.output[j] = temp
                    copies.append(make_op("Copy", [temp], [name]))
        out.append(op)
        out += copies
    return out


def _infer(ops, ctx, layer):
    for op in ops:
        if not all(name in ctx.shapes for name in op.input):
            continue
        try:
            shapes, dtypes = shape_inference.infer_op(op, [ctx.shapes[n] for n in op.input],
                                                      [ctx.dtypes[n] for n in op.input])
        except (shape_inference.UnknownShape, NotImplementedError):
            continue
        except errors.NbcaffeError as exc:
            given = {n: ctx.shapes[n] for n in op.input}
            raise CaffeTranslationError(f"{ctx.where(layer)}: the translated {op.type} op with inputs {given} is"
                                        f" invalid: {exc}") from None
        for name, shape, dtype in zip(op.output, shapes, dtypes):
            if shape is not None:
                ctx.shapes[name] = tuple(int(d) for d in shape)
                ctx.dtypes[name] = np.dtype(dtype)


def _pretrained_blobs(layer, weights_by_name, ctx):
    source = weights_by_name.get(layer.name)
    blobs = source.blobs if source is not None else layer.blobs
    return [blob_to_array(b, f"{ctx.where(layer)}, stored blob {i}") for i, b in enumerate(blobs)]


def _weights_index(pretrained_net):
    found = {}
    if pretrained_net is None:
        return found
    for layer in list(pretrained_net.layer) + list(pretrained_net.layers):
        if layer.name in found and len(layer.blobs):
            if len(found[layer.name].blobs):
                raise CaffeFormatError(f"caffemodel: two layers named '{layer.name}' both hold weights")
        if layer.name not in found or len(layer.blobs):
            found[layer.name] = layer
    return found


def _fusions(layers, is_test):
    """{index of a BatchNorm: index of the Scale layer folded into it}."""
    folds = {}
    for i, layer in enumerate(layers[:-1]):
        nxt = layers[i + 1]
        if layer.type != "BatchNorm" or nxt.type != "Scale" or len(nxt.bottom) != 1:
            continue
        bn_top = layer.top[0]
        if nxt.bottom[0] != bn_top or nxt.scale_param.axis != 1 or nxt.scale_param.num_axes != 1:
            continue
        if not is_test or layer.batch_norm_param.HasField("use_global_stats") \
                and not layer.batch_norm_param.use_global_stats:
            continue
        later_reads = any(bn_top in later.bottom for later in layers[i + 2:])
        if nxt.top[0] != bn_top and later_reads:
            continue  # another layer reads the unscaled normalisation
        folds[i] = i + 1
    return folds


def external_outputs(layers):
    """Caffe's net outputs: blobs produced and never consumed afterwards (production order)."""
    available = {}
    for layer in layers:
        for b in layer.bottom:
            available.pop(b, None)
        for t in layer.top:
            available.pop(t, None)
            available[t] = True
    return list(available)


def translate_model(caffe_net, pretrained_net, is_test=True, net_state=None, remove_legacy_pad=False,
                    input_dims=None):
    """See nbcaffe.caffe_translator.TranslateModel: (predict NetDef, parameter TensorProtos)."""
    net, params, _shapes = translate(caffe_net, pretrained_net, is_test, net_state, remove_legacy_pad, input_dims)
    return net, params


def translate(caffe_net, pretrained_net, is_test=True, net_state=None, remove_legacy_pad=False, input_dims=None):
    """(predict NetDef, TensorProtos, {input name: static shape or None})."""
    from nbcaffe.caffe_translator import _upgrade  # noqa: PLC0415  (_upgrade imports this module)

    caffe_net = _upgrade.as_current(caffe_net, "prototxt")
    if pretrained_net is not None:
        pretrained_net = _upgrade.as_current(pretrained_net, "caffemodel")
    if net_state is None:
        net_state = caffe_pb2.NetState()
        if caffe_net.HasField("state"):
            net_state.CopyFrom(caffe_net.state)
        net_state.phase = caffe_pb2.TEST if is_test else caffe_pb2.TRAIN
    layers = [layer for layer in caffe_net.layer if layer_included(net_state, layer)]
    skipped = [layer.name for layer in caffe_net.layer if not layer_included(net_state, layer)]
    if skipped:
        log.info("net state %s excludes layers %s", caffe_pb2.Phase.Name(net_state.phase), skipped)

    used = set(caffe_net.input)
    for layer in layers:
        used.update(layer.bottom)
        used.update(layer.top)
    ctx = Translation(is_test, remove_legacy_pad, used)
    inputs = declared_inputs(caffe_net, layers)
    dims = _input_dims_map(input_dims, inputs)
    for name, shape in inputs:
        shape = dims.get(name, shape)
        if shape is not None:
            ctx.shapes[name] = tuple(shape)
            ctx.dtypes[name] = np.dtype(np.float32)
    if remove_legacy_pad and not all(ctx.has_shape(n) for n, _ in inputs):
        raise CaffeTranslationError("remove_legacy_pad needs the shape of every input (declare them in the"
                                    " prototxt or pass input_dims)")

    net = caffe2_pb2.NetDef()
    net.name = caffe_net.name
    params = caffe2_pb2.TensorProtos()
    weights = _weights_index(pretrained_net)
    folds = _fusions(layers, ctx.is_test)
    for i, layer in enumerate(layers):
        if i in folds.values():
            continue
        ctx.layer = layer
        ctx.fold_scale = None
        blobs = _pretrained_blobs(layer, weights, ctx)
        if i in folds:
            scale = layers[folds[i]]
            ctx.fold_scale = (scale, _pretrained_blobs(scale, weights, ctx))
        ops, new_params = TranslatorRegistry.TranslateLayer(layer, blobs, ctx.is_test, ctx=ctx, net=net,
                                                            net_params=params, input_dims=dims)
        for tensor in new_params:
            if tensor.name not in ctx.shapes:
                ctx.shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
                ctx.dtypes[tensor.name] = utils.dtype_of(tensor.data_type)
        ops = _split_forbidden_inplace(ops, ctx)
        _infer(ops, ctx, layer)
        net.op.extend(ops)
        params.protos.extend(new_params)
    ctx.layer = None

    net.external_input.extend(name for name, _ in inputs)
    net.external_input.extend(p.name for p in params.protos)
    net.external_output.extend(external_outputs(_folded_view(layers, folds)))
    return net, params, {name: ctx.shapes.get(name) for name, _ in inputs}


def _folded_view(layers, folds):
    """Layers as the net sees them after folding: a BatchNorm takes its Scale's top."""
    view = []
    for i, layer in enumerate(layers):
        if i in folds.values():
            continue
        if i in folds:
            merged = caffe_pb2.LayerParameter()
            merged.CopyFrom(layer)
            del merged.top[:]
            merged.top.extend(layers[folds[i]].top)
            view.append(merged)
        else:
            view.append(layer)
    return view
