"""Caffe2 -> ONNX exporters: convolution, pooling, normalization, FC/MatMul, Softmax,
Dropout, activations.

Window arguments go through nbcaffe's own parser and geometry (ops/_conv_pool.py), so every
Caffe2 spelling (kernel/kernels/kernel_h...) and legacy padding mode (VALID, SAME,
CAFFE_LEGACY_POOLING's ceil mode) becomes the explicit ``pads`` nbcaffe itself would use.
NHWC ops are wrapped in Transposes (ONNX's conv/pool/norm ops are channels-first).
"""

from __future__ import annotations

import numpy as np
import onnx

from nbcaffe.onnx.frontend import exporter
from nbcaffe.ops import _conv_pool

# ---------------------------------------------------------------------- layout helpers


def _to_nchw(ctx, x, order, rank):
    if order == "NCHW":
        return x
    return ctx.node("Transpose", [x], perm=[0, rank - 1] + list(range(1, rank - 1)))


def _from_nchw(ctx, y, out, order, rank):
    """Write NCHW result ``y`` to blob ``out`` in ``order``."""
    if order == "NCHW":
        return y
    return ctx.node("Transpose", [y], [out], perm=[0] + list(range(2, rank)) + [1])


def _nchw_op(ctx, op, onnx_type, inputs, order, **attrs):
    """Run a channels-first ONNX op on op.input[0] (+ other inputs) for either order."""
    x = op.input[0]
    rank = ctx.rank(x) if order != "NCHW" else None
    xin = _to_nchw(ctx, x, order, rank)
    out = op.output[0]
    y = ctx.node(onnx_type, [xin] + list(inputs), [out] if order == "NCHW" else None, **attrs)
    _from_nchw(ctx, y, out, order, rank)


def _geometry(ctx, op, kind):
    args = ctx.args(op)
    window = _conv_pool.parse_window(args, ctx.where(), kind)
    x_shape = ctx.static_shape(op.input[0])
    if kind == "transpose":
        w_shape = ctx.static_shape(op.input[1])
        return args, window, _conv_pool.transpose_geometry(window, x_shape, w_shape[1] * args["group"])
    return args, window, _conv_pool.resolve(window, x_shape)


# ---------------------------------------------------------------------- conv / pool


@exporter("Conv", "Conv1D", "Conv2D", "Conv3D")
def _conv(ctx, op):
    args, _window, geo = _geometry(ctx, op, "conv")
    _nchw_op(ctx, op, "Conv", op.input[1:], args["order"], kernel_shape=list(geo.kernel), strides=list(geo.stride),
             pads=list(geo.pad_head) + list(geo.pad_tail), dilations=list(geo.dilation), group=int(args["group"]))


@exporter("ConvTranspose")
def _conv_transpose(ctx, op):
    args, window, geo = _geometry(ctx, op, "transpose")
    rank = geo.rank
    adj = window.adj if isinstance(window.adj, tuple) else (int(window.adj),) * rank
    _nchw_op(ctx, op, "ConvTranspose", op.input[1:], args["order"], kernel_shape=list(geo.kernel),
             strides=list(geo.stride), pads=list(geo.pad_head) + list(geo.pad_tail), output_padding=list(adj),
             group=int(args["group"]))


@exporter("MaxPool", "MaxPool1D", "MaxPool2D", "MaxPool3D", "AveragePool", "AveragePool1D", "AveragePool2D",
          "AveragePool3D")
def _pool(ctx, op):
    args, window, geo = _geometry(ctx, op, "pool")
    average = op.type.startswith("Average")
    if window.global_pooling:
        _nchw_op(ctx, op, "GlobalAveragePool" if average else "GlobalMaxPool", [], args["order"])
        return
    attrs = dict(kernel_shape=list(geo.kernel), strides=list(geo.stride),
                 pads=list(geo.pad_head) + list(geo.pad_tail))
    if average:
        if args["count_include_pad"]:
            attrs["count_include_pad"] = 1
        if any(d != 1 for d in geo.dilation):
            raise ctx.error("AveragePool with dilation needs ONNX opset 19 (the export targets 18)")
    elif any(d != 1 for d in geo.dilation):
        attrs["dilations"] = list(geo.dilation)
    _nchw_op(ctx, op, "AveragePool" if average else "MaxPool", [], args["order"], **attrs)


@exporter("MaxPoolWithIndex")
def _max_pool_with_index(ctx, op):
    """ONNX MaxPool's Indices count over the whole (N, C, *spatial) tensor; Caffe2's mask counts
    within each (n, c) plane, int32, flattened."""
    args, window, geo = _geometry(ctx, op, "pool")
    if args["order"] != "NCHW" or window.global_pooling:
        raise ctx.error("MaxPoolWithIndex is exported for NCHW windows (not global pooling) only")
    attrs = dict(kernel_shape=list(geo.kernel), strides=list(geo.stride), pads=list(geo.pad_head) + list(geo.pad_tail))
    if any(d != 1 for d in geo.dilation):
        attrs["dilations"] = list(geo.dilation)
    indices = ctx.tmp("indices")
    ctx.node("MaxPool", [op.input[0]], [op.output[0], indices], **attrs)
    plane = ctx.const(np.array(int(np.prod(geo.in_sp)), np.int64), "plane")
    local = ctx.node("Mod", [indices, plane])
    flat = ctx.node("Reshape", [local, ctx.ints([-1], "flat")])
    ctx.node("Cast", [flat], [op.output[1]], to=onnx.TensorProto.INT32)


# ---------------------------------------------------------------------- normalization


@exporter("SpatialBN")
def _spatial_bn(ctx, op):
    args = ctx.args(op)
    if not args["is_test"]:
        raise ctx.error("SpatialBN in training mode (is_test=0) has no ONNX inference equivalent; export the"
                        " test-mode net")
    _nchw_op(ctx, op, "BatchNormalization", op.input[1:5], args["order"], epsilon=float(args["epsilon"]))


@exporter("LRN")
def _lrn(ctx, op):
    args = ctx.args(op)
    _nchw_op(ctx, op, "LRN", [], args["order"], size=int(args["size"]), alpha=float(args["alpha"]),
             beta=float(args["beta"]), bias=float(args["bias"]))


@exporter("InstanceNorm")
def _instance_norm(ctx, op):
    args = ctx.args(op)
    if len(op.output) > 1:
        raise ctx.error("the saved_mean / saved_inv_stdev outputs are not exported")
    _nchw_op(ctx, op, "InstanceNormalization", op.input[1:3], args["order"], epsilon=float(args["epsilon"]))


@exporter("LayerNorm")
def _layer_norm(ctx, op):
    args = ctx.args(op)
    x = op.input[0]
    shape = ctx.static_shape(x)
    axis = args["axis"] + len(shape) if args["axis"] < 0 else args["axis"]
    norm_shape = shape[axis:]
    dtype = ctx.dtype(x) or np.float32
    if args["elementwise_affine"]:
        scale = ctx.node("Reshape", [op.input[1], ctx.ints(norm_shape, "nshape")])
        bias = ctx.node("Reshape", [op.input[2], ctx.ints(norm_shape, "nshape")])
    else:
        scale = ctx.const(np.ones(norm_shape, dtype), "ones")
        bias = ctx.const(np.zeros(norm_shape, dtype), "zeros")
    outputs = [op.output[0]]
    if len(op.output) > 1:
        outputs += [ctx.tmp("mean"), ctx.tmp("inv_std")]
    ctx.node("LayerNormalization", [x, scale, bias], outputs, axis=axis, epsilon=float(args["epsilon"]))
    if len(op.output) > 1:  # Caffe2: mean and std shaped X.shape[:axis] + (1,)
        stat_shape = ctx.ints(list(shape[:axis]) + [1], "stat_shape")
        ctx.node("Reshape", [outputs[1], stat_shape], [op.output[1]])
        std = ctx.node("Reciprocal", [outputs[2]])
        ctx.node("Reshape", [std, stat_shape], [op.output[2]])


# ---------------------------------------------------------------------- FC / MatMul


def _flat2d(ctx, name, axis, tag):
    """``name`` flattened to 2-D at ``axis``: a reshaped initializer or a Flatten node."""
    shape = ctx.static_shape(name)
    axis = axis + len(shape) if axis < 0 else axis
    if len(shape) == 2 and axis == 1:
        return name
    value = ctx.value(name)
    if value is not None:
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        return ctx.const(value.reshape(outer, -1), tag)
    return ctx.node("Flatten", [name], axis=axis)


@exporter("FC")
def _fc(ctx, op):
    args = ctx.args(op)
    x, w, b = op.input[:3]
    x_shape = ctx.static_shape(x)
    axis = args["axis"] + len(x_shape) if args["axis"] < 0 else args["axis"]
    x2 = _flat2d(ctx, x, axis, "x2d")
    w2 = _flat2d(ctx, w, args["axis_w"], "w2d")
    out = op.output[0]
    if len(x_shape) == 2 and axis == 1:
        ctx.node("Gemm", [x2, w2, b], [out], transB=1)
        return
    y = ctx.node("Gemm", [x2, w2, b], transB=1)
    ctx.node("Reshape", [y, ctx.ints(ctx.static_shape(out), "out_shape")], [out])


@exporter("MatMul")
def _matmul(ctx, op):
    args = ctx.args(op)
    a, b = op.input[:2]
    a2 = _flat2d(ctx, a, args["axis_a"], "a2d")
    b2 = _flat2d(ctx, b, args["axis_b"], "b2d")
    ctx.node("Gemm", [a2, b2], [op.output[0]], transA=int(args["trans_a"]), transB=int(args["trans_b"]))


def _swap_last(ctx, name):
    rank = ctx.rank(name)
    return ctx.node("Transpose", [name], perm=list(range(rank - 2)) + [rank - 1, rank - 2])


@exporter("BatchMatMul")
def _batch_matmul(ctx, op):
    args = ctx.args(op)
    a, b = op.input[:2]
    if args["trans_a"]:
        a = _swap_last(ctx, a)
    if args["trans_b"]:
        b = _swap_last(ctx, b)
    ra, rb = ctx.rank(op.input[0]), ctx.rank(op.input[1])
    if ra == 1 and rb == 1:  # Caffe2 gives a 1-element vector, ONNX a scalar
        y = ctx.node("MatMul", [a, b])
        ctx.node("Reshape", [y, ctx.ints([1], "one")], [op.output[0]])
        return
    ctx.node("MatMul", [a, b], [op.output[0]])


# ---------------------------------------------------------------------- softmax, dropout


@exporter("Softmax")
def _softmax(ctx, op):
    args = ctx.args(op)
    x, out = op.input[0], op.output[0]
    rank = ctx.rank(x)
    axis = args["axis"] + rank if args["axis"] < 0 else args["axis"]
    if axis == rank - 1:
        ctx.node("Softmax", [x], [out], axis=-1)
        return
    # Caffe2 normalises over every dim from axis on: flatten, softmax the rows, restore
    flat = ctx.node("Flatten", [x], axis=axis)
    y = ctx.node("Softmax", [flat], axis=1)
    ctx.node("Reshape", [y, ctx.node("Shape", [x])], [out])


@exporter("Dropout")
def _dropout(ctx, op):
    args = ctx.args(op)
    if not args["is_test"]:
        raise ctx.error("Dropout in training mode (is_test=0) is random; export the test-mode net")
    if len(op.output) > 1:
        ctx.node("Dropout", [op.input[0]], list(op.output[:2]))
    else:
        ctx.node("Identity", [op.input[0]], [op.output[0]])


# ---------------------------------------------------------------------- activations

_SAME_NAME = ("Relu", "Sigmoid", "Tanh", "Softplus", "Exp", "Log", "Sqrt", "Abs", "Reciprocal", "Erf", "Sin", "Cos",
              "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round",
              "Sign", "Softsign", "HardSwish", "IsNaN", "Not")


@exporter(*_SAME_NAME)
def _same(ctx, op):
    ctx.node(op.type, [op.input[0]], [op.output[0]])


@exporter("Negative")
def _negative(ctx, op):
    ctx.node("Neg", [op.input[0]], [op.output[0]])


@exporter("Sqr")
def _sqr(ctx, op):
    ctx.node("Mul", [op.input[0], op.input[0]], [op.output[0]])


def _scalar(ctx, value, like, tag):
    return ctx.const(np.array(value, ctx.dtype(like) or np.float32), tag)


@exporter("Scale")
def _scale(ctx, op):
    ctx.node("Mul", [op.input[0], _scalar(ctx, ctx.args(op)["scale"], op.input[0], "scale")], [op.output[0]])


@exporter("Elu", "LeakyRelu", "Celu", "ThresholdedRelu")
def _alpha(ctx, op):
    ctx.node(op.type, [op.input[0]], [op.output[0]], alpha=float(ctx.args(op)["alpha"]))


@exporter("Selu")
def _selu(ctx, op):
    args = ctx.args(op)
    ctx.node("Selu", [op.input[0]], [op.output[0]], alpha=float(args["alpha"]), gamma=float(args["scale"]))


@exporter("HardSigmoid")
def _hard_sigmoid(ctx, op):
    args = ctx.args(op)
    ctx.node("HardSigmoid", [op.input[0]], [op.output[0]], alpha=float(args["alpha"]), beta=float(args["beta"]))


@exporter("Shrink")
def _shrink(ctx, op):
    args = ctx.args(op)
    ctx.node("Shrink", [op.input[0]], [op.output[0]], lambd=float(args["lambd"]), bias=float(args["bias"]))


@exporter("Mish")
def _mish(ctx, op):
    ctx.node("Mish", [op.input[0]], [op.output[0]])


@exporter("Swish")
def _swish(ctx, op):
    x = op.input[0]
    scaled = ctx.node("Mul", [x, _scalar(ctx, ctx.args(op)["alpha"], x, "alpha")])
    ctx.node("Mul", [x, ctx.node("Sigmoid", [scaled])], [op.output[0]])


@exporter("Gelu")
def _gelu(ctx, op):  # opset 20 has Gelu; at 18 the formula
    x = op.input[0]
    half = ctx.node("Mul", [x, _scalar(ctx, 0.5, x, "half")])
    if ctx.args(op)["fast_gelu"]:
        cube = ctx.node("Mul", [ctx.node("Mul", [x, x]), x])
        inner = ctx.node("Add", [x, ctx.node("Mul", [cube, _scalar(ctx, 0.044715, x, "c")])])
        t = ctx.node("Tanh", [ctx.node("Mul", [inner, _scalar(ctx, np.sqrt(2 / np.pi), x, "k")])])
    else:
        t = ctx.node("Erf", [ctx.node("Mul", [x, _scalar(ctx, 1 / np.sqrt(2), x, "k")])])
    ctx.node("Mul", [half, ctx.node("Add", [t, _scalar(ctx, 1.0, x, "one")])], [op.output[0]])


@exporter("PRelu")
def _prelu(ctx, op):
    args = ctx.args(op)
    x, slope = op.input[:2]
    rank = ctx.rank(x)
    n = int(np.prod(ctx.static_shape(slope)))
    if args["order"] == "NCHW" and n > 1:  # per channel: (C, 1, ..., 1) broadcasts over dim 1
        shape = [n] + [1] * (rank - 2)
        value = ctx.value(slope)
        slope = ctx.const(value.reshape(shape), "slope") if value is not None else \
            ctx.node("Reshape", [slope, ctx.ints(shape, "slope_shape")])
    ctx.node("PRelu", [x, slope], [op.output[0]])
