"""ONNX -> Caffe2 converters: elementwise maths, activations, comparisons, logic, variadic
Sum/Mean/Max/Min, Softmax/LogSoftmax.

Binary ops broadcast NumPy-style from opset 7 (nbcaffe's Add/Sub/... without ``broadcast``);
before that ONNX had Caffe2's legacy ``broadcast=1, axis`` form, passed through unchanged.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.onnx.converter import converter
from nbcaffe.onnx.helper import caffe2_data_type

# ONNX op -> nbcaffe op, same inputs/outputs, no attributes
_UNARY = {
    "Abs": "Abs", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Neg": "Negative", "Relu": "Relu",
    "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Softplus": "Softplus", "Softsign": "Softsign",
    "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Asin": "Asin", "Acos": "Acos", "Atan": "Atan",
    "Sinh": "Sinh", "Cosh": "Cosh", "Asinh": "Asinh", "Acosh": "Acosh", "Atanh": "Atanh",
    "Floor": "Floor", "Ceil": "Ceil", "Round": "Round", "Sign": "Sign", "Reciprocal": "Reciprocal",
    "Erf": "Erf", "IsNaN": "IsNaN", "Not": "Not", "Mish": "Mish", "HardSwish": "HardSwish",
}
_BINARY = {
    "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div",
    "Equal": "EQ", "Less": "LT", "Greater": "GT", "LessOrEqual": "LE", "GreaterOrEqual": "GE",
    "And": "And", "Or": "Or", "Xor": "Xor",
}


def _unary(node):
    node.op(_UNARY[node.op_type], [node.inputs[0]], [node.outputs[0]])


for _onnx_type in _UNARY:
    converter(_onnx_type)(_unary)


def _legacy_broadcast_args(node) -> dict:
    """Opset < 7: ONNX's own legacy broadcast attributes are Caffe2's."""
    if node.opset < 7 and node.attr("broadcast", 0):
        args = {"broadcast": 1}
        if "axis" in node.attrs:
            args["axis"] = node.attrs["axis"]
        return args
    return {}


def _binary(node):
    node.op(_BINARY[node.op_type], node.inputs[:2], [node.outputs[0]], **_legacy_broadcast_args(node))


for _onnx_type in _BINARY:
    converter(_onnx_type)(_binary)


@converter("Elu")
def _elu(node):
    node.op("Elu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.0)))


@converter("LeakyRelu")
def _leaky_relu(node):
    node.op("LeakyRelu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 0.01)))


@converter("Selu")
def _selu(node):
    node.op("Selu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.67326319217681884765625)),
            scale=float(node.attr("gamma", 1.05070102214813232421875)))


@converter("Celu")
def _celu(node):
    node.op("Celu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.0)))


@converter("HardSigmoid")
def _hard_sigmoid(node):
    node.op("HardSigmoid", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 0.2)),
            beta=float(node.attr("beta", 0.5)))


@converter("ThresholdedRelu")
def _thresholded_relu(node):
    node.op("ThresholdedRelu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.0)))


@converter("Shrink")
def _shrink(node):
    node.op("Shrink", node.inputs[:1], node.outputs[:1], lambd=float(node.attr("lambd", 0.5)),
            bias=float(node.attr("bias", 0.0)))


@converter("Gelu")
def _gelu(node):
    approximate = node.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise node.error(f"approximate='{approximate}' (expected 'none' or 'tanh')")
    node.op("Gelu", node.inputs[:1], node.outputs[:1], fast_gelu=int(approximate == "tanh"))


@converter("Swish")
def _swish(node):
    node.op("Swish", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.0)))


@converter("IsInf")
def _is_inf(node):
    node.op("IsInf", node.inputs[:1], node.outputs[:1], detect_negative=int(node.attr("detect_negative", 1)),
            detect_positive=int(node.attr("detect_positive", 1)))


@converter("PRelu")
def _prelu(node):
    x, slope = node.inputs[:2]
    if node.opset < 7:  # PRelu-6: one shared slope or one per channel (Caffe2's own op)
        node.op("PRelu", [x, slope], node.outputs[:1])
        return
    x_shape, s_shape = node.shape(0), node.shape(1)
    if x_shape is not None and s_shape is not None and None not in s_shape and len(x_shape) >= 1:
        size = int(np.prod(s_shape)) if s_shape else 1
        channels = x_shape[1] if len(x_shape) >= 2 else None
        # Caffe2 PRelu: one shared slope, or one per channel (dim 1) broadcast over the rest
        per_channel = (channels is not None and size == channels and len(s_shape) <= len(x_shape) - 1
                       and s_shape[0] == channels and all(d == 1 for d in s_shape[1:])
                       and len(s_shape) == len(x_shape) - 1)
        if size == 1 or per_channel:
            node.op("PRelu", [x, slope], node.outputs[:1])
            return
    # general unidirectional broadcast: max(x, 0) + slope * min(x, 0)
    pos = node.op("Relu", [x], [node.tmp("pos")])
    neg_x = node.op("Negative", [x], [node.tmp("negx")])
    relu_neg = node.op("Relu", [neg_x], [node.tmp("reluneg")])
    neg = node.op("Negative", [relu_neg], [node.tmp("neg")])
    scaled = node.op("Mul", [neg, slope], [node.tmp("scaled")])
    node.op("Add", [pos, scaled], node.outputs[:1])


@converter("Pow")
def _pow(node):
    base, exponent = node.inputs[:2]
    bdt, edt = node.dtype(0), node.dtype(1)
    args = _legacy_broadcast_args(node)
    if bdt is not None and edt is not None and bdt != edt:
        exponent = node.op("Cast", [exponent], [node.tmp("exp")], to=caffe2_data_type(bdt, node.where()))
    node.op("Pow", [base, exponent], node.outputs[:1], **args)


@converter("Clip")
def _clip(node):
    if node.opset < 11:
        node.op("Clip", node.inputs[:1], node.outputs[:1], min=float(node.attr("min", -np.inf)),
                max=float(node.attr("max", np.inf)))
        return
    lo = node.optional_value(1, "min")
    hi = node.optional_value(2, "max")
    args = {}
    if lo is not None:
        args["min"] = float(np.asarray(lo).reshape(()))
    if hi is not None:
        args["max"] = float(np.asarray(hi).reshape(()))
    node.op("Clip", node.inputs[:1], node.outputs[:1], **args)


# ---------------------------------------------------------------------- variadic


def _same_static_shapes(node, names) -> bool:
    shapes = [node.shape(n) for n in names]
    return all(s is not None and None not in s for s in shapes) and len({tuple(s) for s in shapes}) == 1


def _variadic(node, caffe2_type, pairwise):
    names = [n for n in node.inputs if n]
    out = node.outputs[0]
    if len(names) == 1:
        node.op("Copy", names, [out])
        return out
    if _same_static_shapes(node, names):
        node.op(caffe2_type, names, [out])
        return out
    if pairwise is None:  # Max/Min: expand every input to the common shape first
        shape = node.static_shape(out) if node.shape(out) is not None else None
        if shape is None:
            raise node.error("inputs of different shapes need the output shape from ONNX shape inference")
        target = node.const(np.array(shape, np.int64), "shape")
        expanded = [node.op("Expand", [n, target], [node.tmp("e")]) for n in names]
        node.op(caffe2_type, expanded, [out])
        return out
    acc = names[0]
    for k, name in enumerate(names[1:]):
        dest = out if k == len(names) - 2 else node.tmp("acc")
        acc = node.op(pairwise, [acc, name], [dest])
    return out


@converter("Sum")
def _sum(node):
    _variadic(node, "Sum", "Add")


@converter("Max")
def _max(node):
    _variadic(node, "Max", None)


@converter("Min")
def _min(node):
    _variadic(node, "Min", None)


@converter("Mean")
def _mean(node):
    names = [n for n in node.inputs if n]
    total = node.tmp("sum")
    real_out = node.outputs[0]
    node.outputs[0] = total
    _variadic(node, "Sum", "Add")
    node.outputs[0] = real_out
    node.op("Scale", [total], [real_out], scale=1.0 / len(names))


# ---------------------------------------------------------------------- softmax family


def _softmax_axes(node):
    """(axes normalised over, caffe2 axis or None): opset < 13 flattens at ``axis`` (Caffe2's
    own rule); from 13 only ``axis`` is normalised."""
    rank = node.rank(0)
    if node.opset < 13:
        axis = int(node.attr("axis", 1))
        axis = axis + rank if axis < 0 else axis
        return list(range(axis, rank)), axis
    axis = int(node.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    return [axis], (axis if axis == rank - 1 else None)


@converter("Softmax")
def _softmax(node):
    axes, caffe2_axis = _softmax_axes(node)
    if caffe2_axis is not None:
        node.op("Softmax", node.inputs[:1], node.outputs[:1], axis=caffe2_axis)
        return
    x = node.inputs[0]
    m = node.op("ReduceMax", [x], [node.tmp("max")], axes=axes, keepdims=1)
    d = node.op("Sub", [x, m], [node.tmp("d")])
    e = node.op("Exp", [d], [node.tmp("e")])
    s = node.op("ReduceSum", [e], [node.tmp("s")], axes=axes, keepdims=1)
    node.op("Div", [e, s], node.outputs[:1])


@converter("LogSoftmax")
def _log_softmax(node):
    # x - max - log(sum(exp(x - max))): stable, and exact where log(softmax) would underflow
    axes, _ = _softmax_axes(node)
    x = node.inputs[0]
    m = node.op("ReduceMax", [x], [node.tmp("max")], axes=axes, keepdims=1)
    d = node.op("Sub", [x, m], [node.tmp("d")])
    e = node.op("Exp", [d], [node.tmp("e")])
    s = node.op("ReduceSum", [e], [node.tmp("s")], axes=axes, keepdims=1)
    log_s = node.op("Log", [s], [node.tmp("logs")])
    node.op("Sub", [d, log_s], node.outputs[:1])


@converter("Where")
def _where(node):
    node.op("Where", node.inputs[:3], node.outputs[:1])
