"""Translators of elementwise and classifier layers: ReLU (leaky), PReLU, Sigmoid, TanH,
AbsVal, BNLL, ELU, Clip, Swish, Power, Exp, Log, Dropout, Softmax, SoftmaxWithLoss, Accuracy.

Softmax normalises along one axis in Caffe; Caffe2's Softmax flattens the input at ``axis``
and normalises over everything after it, so a 4-D Softmax over channels becomes
Transpose (axis to the end) -> Softmax(last axis) -> Transpose back.  Caffe's affine
pre-transforms of Power/Exp/Log ``(shift + scale * x)`` become Scale and Add (with a
one-element parameter) ops, skipped when they are the identity.
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe.caffe_translator._core import TranslatorRegistry, make_op
from nbcaffe.caffe_translator.layers_conv import need_blobs
from nbcaffe.proto import caffe2_pb2, caffe_pb2

register = TranslatorRegistry.Register


def _simple(op_type, **args):
    def translate(layer, pretrained_blobs, is_test, ctx, **_):
        return [make_op(op_type, [layer.bottom[0]], [layer.top[0]], **args)], []

    translate.__name__ = f"translate_{op_type.lower()}"
    return translate


register("Sigmoid")(_simple("Sigmoid"))
register("TanH")(_simple("Tanh"))
register("AbsVal")(_simple("Abs"))
register("BNLL")(_simple("Softplus"))  # Caffe's BNLL is log(1 + exp(x))


@register("ReLU")
def translate_relu(layer, pretrained_blobs, is_test, ctx, **_):
    slope = float(layer.relu_param.negative_slope)
    if slope != 0.0:  # Caffe2's translator dropped the slope and gave a plain Relu
        return [make_op("LeakyRelu", [layer.bottom[0]], [layer.top[0]], alpha=slope)], []
    return [make_op("Relu", [layer.bottom[0]], [layer.top[0]])], []


@register("ELU")
def translate_elu(layer, pretrained_blobs, is_test, ctx, **_):
    return [make_op("Elu", [layer.bottom[0]], [layer.top[0]], alpha=float(layer.elu_param.alpha))], []


@register("Clip")
def translate_clip(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.clip_param
    return [make_op("Clip", [layer.bottom[0]], [layer.top[0]], min=float(p.min), max=float(p.max))], []


@register("Swish")
def translate_swish(layer, pretrained_blobs, is_test, ctx, **_):
    x, y = layer.bottom[0], layer.top[0]
    beta = float(layer.swish_param.beta)
    gate = ctx.fresh(f"{y}_swish_gate")
    ops = []
    if beta != 1.0:
        ops.append(make_op("Scale", [x], [gate], scale=beta))
        ops.append(make_op("Sigmoid", [gate], [gate]))
    else:
        ops.append(make_op("Sigmoid", [x], [gate]))
    ops.append(make_op("Mul", [x, gate], [y]))
    return ops, []


@register("PReLU")
def translate_prelu(layer, pretrained_blobs, is_test, ctx, **_):
    x, y = layer.bottom[0], layer.top[0]
    need_blobs(ctx, pretrained_blobs, 1, "slopes")
    slope = pretrained_blobs[0].reshape(-1)
    if layer.prelu_param.channel_shared and slope.size != 1:
        raise ctx.error(f"channel_shared PReLU stores {slope.size} slopes, expected 1")
    if ctx.has_shape(x) and slope.size not in (1, ctx.shape(x)[1]):
        raise ctx.error(f"{slope.size} slopes for '{x}' of shape {ctx.shape(x)} (need 1 or one per channel)")
    param = ctx.tensor(f"{y}_Slope", slope)
    return [make_op("PRelu", [x, param.name], [y])], [param]


def affine_ops(ctx, x, out, scale, shift, base):
    """Ops computing ``shift + scale * x`` into ``out`` (a Copy when it is the identity);
    returns (ops, params, name holding the result)."""
    ops, params = [], []
    src = x
    if scale != 1.0:
        ops.append(make_op("Scale", [src], [out], scale=float(scale)))
        src = out
    if shift != 0.0:
        const = ctx.tensor(f"{base}_shift", np.array([shift], np.float32))
        params.append(const)
        ops.append(make_op("Add", [src, const.name], [out], broadcast=1))
        src = out
    return ops, params, src


@register("Power")
def translate_power(layer, pretrained_blobs, is_test, ctx, **_):
    """y = (shift + scale * x) ** power."""
    p = layer.power_param
    x, y = layer.bottom[0], layer.top[0]
    inner = y if x != y else ctx.fresh(f"{y}_power_base")
    ops, params, src = affine_ops(ctx, x, inner, p.scale, p.shift, y)
    if p.power != 1.0:
        ops.append(make_op("Pow", [src], [y], exponent=float(p.power)))
    elif src != y:
        ops.append(make_op("Copy", [src], [y]))
    return ops, params


def _log_base(ctx, base, what):
    if base == -1.0:
        return 1.0
    if not base > 0.0:
        raise ctx.error(f"{what} base must be positive or -1 (for e), got {base}")
    return math.log(base)


@register("Exp")
def translate_exp(layer, pretrained_blobs, is_test, ctx, **_):
    """y = base ** (shift + scale * x) = exp(ln(base) * shift + ln(base) * scale * x)."""
    p = layer.exp_param
    x, y = layer.bottom[0], layer.top[0]
    ln_base = _log_base(ctx, p.base, "Exp")
    inner = y if x != y else ctx.fresh(f"{y}_exp_arg")
    ops, params, src = affine_ops(ctx, x, inner, ln_base * p.scale, ln_base * p.shift, y)
    ops.append(make_op("Exp", [src], [y]))
    return ops, params


@register("Log")
def translate_log(layer, pretrained_blobs, is_test, ctx, **_):
    """y = log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)."""
    p = layer.log_param
    x, y = layer.bottom[0], layer.top[0]
    ln_base = _log_base(ctx, p.base, "Log")
    inner = y if x != y else ctx.fresh(f"{y}_log_arg")
    ops, params, src = affine_ops(ctx, x, inner, p.scale, p.shift, y)
    ops.append(make_op("Log", [src], [y]))
    if ln_base != 1.0:
        ops.append(make_op("Scale", [y], [y], scale=1.0 / ln_base))
    return ops, params


@register("Dropout")
def translate_dropout(layer, pretrained_blobs, is_test, ctx, **_):
    y = layer.top[0]
    return [make_op("Dropout", [layer.bottom[0]], [y, ctx.fresh(f"_{y}_mask")],
                    ratio=float(layer.dropout_param.dropout_ratio), is_test=1 if is_test else None)], []


def softmax_ops(ctx, x, y, axis):
    """Caffe's Softmax over one axis of x into y."""
    axis = ctx.axis(axis, x)
    rank = ctx.rank(x)
    if axis == rank - 1:
        return [make_op("Softmax", [x], [y], axis=axis if axis != 1 else None)]
    # any other axis: move it last, so the result stays right for every input size
    perm = [i for i in range(rank) if i != axis] + [axis]
    inverse = [int(i) for i in np.argsort(perm)]
    moved = ctx.fresh(f"{y}_softmax_nhwc")
    return [make_op("Transpose", [x], [moved], axes=perm),
            make_op("Softmax", [moved], [moved], axis=rank - 1),
            make_op("Transpose", [moved], [y], axes=inverse)]


@register("Softmax")
def translate_softmax(layer, pretrained_blobs, is_test, ctx, **_):
    return softmax_ops(ctx, layer.bottom[0], layer.top[0], layer.softmax_param.axis), []


def int_labels(ctx, label, base):
    """Caffe's float label blob as Caffe2's int32 vector: Cast then FlattenToVec."""
    cast = ctx.fresh(f"{base}_label_int")
    return [make_op("Cast", [label], [cast], to=caffe2_pb2.TensorProto.INT32),
            make_op("FlattenToVec", [cast], [cast])], cast


def _check_classifier_input(ctx, x, axis, what):
    axis = ctx.axis(axis, x)
    if axis != 1:
        raise ctx.unsupported(f"{what} over axis {axis} (only the class axis 1 of (N, C) scores)")
    if ctx.has_shape(x) and ctx.rank(x) != 2 and int(np.prod(ctx.shape(x)[2:])) != 1:
        raise ctx.unsupported(f"{what} of per-position scores {ctx.shape(x)} (only (N, C) scores)")


@register("SoftmaxWithLoss")
def translate_softmax_with_loss(layer, pretrained_blobs, is_test, ctx, **_):
    """Softmax + LabelCrossEntropy + AveragedLoss (Caffe2's translation), labels cast to int32."""
    lp = layer.loss_param
    if lp.HasField("ignore_label"):
        raise ctx.unsupported("loss_param.ignore_label (LabelCrossEntropy has no ignored label)")
    x, label = layer.bottom[0], layer.bottom[1]
    _check_classifier_input(ctx, x, layer.softmax_param.axis, "SoftmaxWithLoss")
    flat = ctx.fresh(f"{x}_translator_autogen_2d")
    prob = layer.top[1] if len(layer.top) > 1 else ctx.fresh(f"{x}_translator_autogen_softmax")
    ops = [make_op("Flatten", [x], [flat]), make_op("Softmax", [flat], [prob])]
    label_ops, label_int = int_labels(ctx, label, layer.top[0])
    ops += label_ops
    xent = ctx.fresh(f"{x}_translator_autogen_xent")
    ops.append(make_op("LabelCrossEntropy", [prob, label_int], [xent]))
    if lp.normalization == caffe_pb2.LossParameter.NONE or (lp.HasField("normalize") and not lp.normalize
                                                           and not lp.HasField("normalization")):
        ops.append(make_op("SumElements", [xent], [layer.top[0]]))
    else:  # FULL, VALID (no ignored label) and BATCH_SIZE all divide by N for (N, C) scores
        ops.append(make_op("AveragedLoss", [xent], [layer.top[0]]))
    weight = float(layer.loss_weight[0]) if len(layer.loss_weight) else 1.0
    if weight != 1.0:
        ops.append(make_op("Scale", [layer.top[0]], [layer.top[0]], scale=weight))
    return ops, []


@register("Accuracy")
def translate_accuracy(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.accuracy_param
    if p.HasField("ignore_label"):
        raise ctx.unsupported("accuracy_param.ignore_label")
    if len(layer.top) > 1:
        raise ctx.unsupported("a second (per-class accuracy) top")
    x, label = layer.bottom[0], layer.bottom[1]
    _check_classifier_input(ctx, x, p.axis, "Accuracy")
    ops, label_int = int_labels(ctx, label, layer.top[0])
    scores = x
    if ctx.has_shape(x) and ctx.rank(x) != 2:
        scores = ctx.fresh(f"{x}_2d")
        ops.append(make_op("Flatten", [x], [scores]))
    ops.append(make_op("Accuracy", [scores, label_int], [layer.top[0]], top_k=int(p.top_k) if p.top_k != 1 else None))
    return ops, []
