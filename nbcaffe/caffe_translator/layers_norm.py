"""Translators of the normalisation layers: LRN (both regions), BatchNorm (with a following
Scale folded in), Scale, Bias, MVN, InstanceNorm.

* BatchNorm stores running sums and a scale factor: mean = blob0 / blob2[0], var = blob1 /
  blob2[0] (0 when the factor is 0, as in Caffe).  A Scale layer (axis 1, one axis, learned
  weights) that directly consumes the BatchNorm's top is folded into SpatialBN's scale and
  bias, so the pair costs one op; any other Scale becomes Mul (+ Add for its bias).
  NVCaffe/Intel Caffe BatchNorm layers with five blobs carry their own scale and bias.
* WITHIN_CHANNEL LRN is Caffe's own decomposition: x * (1 + alpha * avg_{n x n}(x²))^-beta
  with the n x n average counting the zero padding (Caffe uses shift 1 here and ignores k).
"""

from __future__ import annotations

import numpy as np

from nbcaffe.caffe_translator._core import TranslatorRegistry, make_op
from nbcaffe.caffe_translator.layers_conv import need_blobs
from nbcaffe.proto import caffe_pb2

register = TranslatorRegistry.Register


@register("LRN")
def translate_lrn(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.lrn_param
    x, y = layer.bottom[0], layer.top[0]
    size = int(p.local_size)
    if size % 2 == 0:
        raise ctx.error(f"local_size {size} must be odd (Caffe checks this too)")
    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        return [make_op("LRN", [x], [y, ctx.fresh(f"_{y}_scale")], size=size, alpha=float(p.alpha),
                        beta=float(p.beta), bias=float(p.k), order="NCHW")], []
    if ctx.has_shape(x) and ctx.rank(x) != 4:
        raise ctx.error(f"WITHIN_CHANNEL LRN needs a 4-D blob, '{x}' has shape {ctx.shape(x)}")
    sq = ctx.fresh(f"{y}_lrn_sq")
    den = ctx.fresh(f"{y}_lrn_den")
    one = ctx.tensor(f"{y}_lrn_one", np.array([1.0], np.float32))
    ops = [make_op("Sqr", [x], [sq]),
           make_op("AveragePool", [sq], [den], kernel=size, stride=1, pad=(size - 1) // 2, count_include_pad=1,
                   order="NCHW"),
           make_op("Scale", [den], [den], scale=float(p.alpha)),
           make_op("Add", [den, one.name], [den], broadcast=1),
           make_op("Pow", [den], [den], exponent=-float(p.beta)),
           make_op("Mul", [x, den], [y])]
    return ops, [one]


def _bn_statistics(ctx, blobs):
    need_blobs(ctx, blobs, 3, "mean sum, variance sum, scale factor")
    mean, var, factor = blobs[0].reshape(-1), blobs[1].reshape(-1), blobs[2].reshape(-1)
    if factor.size != 1 or mean.size != var.size:
        raise ctx.error(f"stored blobs {[b.shape for b in blobs[:3]]} are not (C,), (C,), (1,)")
    mult = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
    return (mean * mult).astype(np.float32), (var * mult).astype(np.float32)


@register("BatchNorm")
def translate_batch_norm(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.batch_norm_param
    x = layer.bottom[0]
    mean, var = _bn_statistics(ctx, pretrained_blobs)
    c = mean.size
    if ctx.has_shape(x) and (ctx.rank(x) < 2 or ctx.shape(x)[1] != c):
        raise ctx.error(f"stored statistics are for {c} channels but '{x}' has shape {ctx.shape(x)}")
    scale, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
    y = layer.top[0]
    if len(pretrained_blobs) >= 5:  # NVCaffe / Intel Caffe: scale and bias fused into the layer
        scale, bias = pretrained_blobs[3].reshape(-1), pretrained_blobs[4].reshape(-1)
    if ctx.fold_scale is not None:
        scale_layer, scale_blobs = ctx.fold_scale
        y = scale_layer.top[0]
        need_blobs(ctx, scale_blobs, 2 if scale_layer.scale_param.bias_term else 1, "scale" + (
            " and bias" if scale_layer.scale_param.bias_term else ""))
        gamma = scale_blobs[0].reshape(-1)
        beta = scale_blobs[1].reshape(-1) if scale_layer.scale_param.bias_term else np.zeros(c, np.float32)
        if gamma.size != c or beta.size != c:
            raise ctx.error(f"the folded Scale layer '{scale_layer.name}' stores {gamma.size} scales and"
                            f" {beta.size} biases for {c} channels")
        bias = bias * gamma + beta
        scale = scale * gamma
    use_global = p.use_global_stats if p.HasField("use_global_stats") else is_test
    params = [ctx.tensor(f"{y}_scale", scale), ctx.tensor(f"{y}_bias", bias), ctx.tensor(f"{y}_mean", mean),
              ctx.tensor(f"{y}_var", var)]
    names = [t.name for t in params]
    outputs = [y]
    if not use_global:
        outputs += [names[2], names[3], ctx.fresh(f"{y}_saved_mean"), ctx.fresh(f"{y}_saved_var")]
    return [make_op("SpatialBN", [x] + names, outputs, is_test=1 if use_global else 0, epsilon=float(p.eps),
                    momentum=None if use_global else float(p.moving_average_fraction), order="NCHW")], params


def _scale_axes(ctx, x, axis, num_axes, param_shape, what):
    """Canonical axis of a Scale/Bias parameter of ``param_shape`` applied to ``x``."""
    if ctx.has_shape(x):
        shape = ctx.shape(x)
        axis = ctx.axis(axis, x)
        span = len(shape) - axis if num_axes == -1 else num_axes
        want = tuple(shape[axis:axis + span])
        if int(np.prod(want)) != int(np.prod(param_shape)):
            raise ctx.error(f"{what} of shape {tuple(param_shape)} does not fit '{x}' {shape} at axis {axis} over"
                            f" {span} axes (expected {want})")
        return axis, want
    if axis < 0:
        raise ctx.error(f"a negative axis needs the shape of '{x}'")
    return axis, tuple(param_shape)


def _broadcast_op(op_type, x, b, y, axis, b_shape):
    if int(np.prod(b_shape)) == 1:
        return make_op(op_type, [x, b], [y], broadcast=1)
    return make_op(op_type, [x, b], [y], broadcast=1, axis=axis)


@register("Scale")
def translate_scale(layer, pretrained_blobs, is_test, ctx, **_):
    """y = x * scale (+ bias), scale broadcast from ``axis`` over ``num_axes`` axes."""
    p = layer.scale_param
    x, y = layer.bottom[0], layer.top[0]
    params, ops = [], []
    if len(layer.bottom) == 2:
        scale_name = layer.bottom[1]
        if not ctx.has_shape(scale_name):
            raise ctx.error(f"needs the shape of the scale bottom '{scale_name}'")
        axis, s_shape = _scale_axes(ctx, x, p.axis, ctx.rank(scale_name), ctx.shape(scale_name), "the scale bottom")
        bias_blob = pretrained_blobs[0] if p.bias_term else None
        if p.bias_term:
            need_blobs(ctx, pretrained_blobs, 1, "bias")
    else:
        need_blobs(ctx, pretrained_blobs, 2 if p.bias_term else 1, "scale" + (" and bias" if p.bias_term else ""))
        axis, s_shape = _scale_axes(ctx, x, p.axis, p.num_axes, pretrained_blobs[0].shape, "the stored scale")
        t = ctx.tensor(f"{y}_w", pretrained_blobs[0].reshape(s_shape if s_shape else (1,)))
        params.append(t)
        scale_name = t.name
        bias_blob = pretrained_blobs[1] if p.bias_term else None
    if bias_blob is None:
        return [_broadcast_op("Mul", x, scale_name, y, axis, s_shape)], params
    mid = ctx.fresh(f"{y}_internal")
    b = ctx.tensor(f"{y}_b", bias_blob.reshape(s_shape if s_shape else (1,)))
    params.append(b)
    ops = [_broadcast_op("Mul", x, scale_name, mid, axis, s_shape), _broadcast_op("Add", mid, b.name, y, axis, s_shape)]
    return ops, params


@register("Bias")
def translate_bias(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.bias_param
    x, y = layer.bottom[0], layer.top[0]
    if len(layer.bottom) == 2:
        b = layer.bottom[1]
        axis, b_shape = _scale_axes(ctx, x, p.axis, ctx.rank(b), ctx.shape(b), "the bias bottom")
        return [_broadcast_op("Add", x, b, y, axis, b_shape)], []
    need_blobs(ctx, pretrained_blobs, 1, "bias")
    axis, b_shape = _scale_axes(ctx, x, p.axis, p.num_axes, pretrained_blobs[0].shape, "the stored bias")
    t = ctx.tensor(f"{y}_b", pretrained_blobs[0].reshape(b_shape if b_shape else (1,)))
    return [_broadcast_op("Add", x, t.name, y, axis, b_shape)], [t]


@register("MVN")
def translate_mvn(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.mvn_param
    return [make_op("MVN", [layer.bottom[0]], [layer.top[0]], across_channels=int(p.across_channels),
                    normalize_variance=int(p.normalize_variance), eps=float(p.eps))], []


@register("InstanceNorm")
def translate_instance_norm(layer, pretrained_blobs, is_test, ctx, **_):
    """A fork layer (Caffe2's translator mapped it): blobs scale and bias, epsilon 1e-5."""
    y = layer.top[0]
    need_blobs(ctx, pretrained_blobs, 2, "scale and bias")
    params = [ctx.tensor(f"{y}_w", pretrained_blobs[0].reshape(-1)), ctx.tensor(f"{y}_b",
                                                                               pretrained_blobs[1].reshape(-1))]
    return [make_op("InstanceNorm", [layer.bottom[0]] + [t.name for t in params], [y], order="NCHW")], params
