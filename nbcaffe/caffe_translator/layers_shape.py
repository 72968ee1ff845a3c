"""Translators of the data-source and blob-shuffling layers: Input and data layers,
Silence, Split, Concat, Slice, Reshape, Flatten, Permute, Crop, Eltwise, Reduction,
Parameter.

Shapes are written so that the translated net keeps working for other batch sizes (and
other spatial sizes where the Caffe layer allows it): leading dims become Caffe2's "copy
this dim" 0, and only dims the layer fixes are spelled out.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.caffe_translator._core import DATA_LAYERS, TranslatorRegistry, make_op
from nbcaffe.caffe_translator.layers_conv import need_blobs
from nbcaffe.proto import caffe_pb2

register = TranslatorRegistry.Register


def _nothing(layer, pretrained_blobs, is_test, ctx, **_):
    """Layers whose tops are fed from outside (inputs) or that only consume (Silence)."""
    return [], []


for _type in ("Input",) + DATA_LAYERS + ("Silence",):
    register(_type)(_nothing)


@register("Split")
def translate_split(layer, pretrained_blobs, is_test, ctx, **_):
    x = layer.bottom[0]
    return [make_op("Copy", [x], [top]) for top in layer.top if top != x], []


@register("Concat")
def translate_concat(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.concat_param
    axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else int(p.concat_dim)
    y = layer.top[0]
    if len(layer.bottom) == 1:
        return [make_op("Copy", [layer.bottom[0]], [y])], []
    axis = ctx.axis(axis, layer.bottom[0])
    return [make_op("Concat", list(layer.bottom), [y, ctx.fresh(f"_{y}_dims")], axis=axis)], []


@register("Slice")
def translate_slice(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.slice_param
    x = layer.bottom[0]
    axis = p.axis if p.HasField("axis") or not p.HasField("slice_dim") else int(p.slice_dim)
    axis = ctx.axis(axis, x)
    tops = list(layer.top)
    points = [int(v) for v in p.slice_point]
    if not points:
        if ctx.has_shape(x) and ctx.shape(x)[axis] % len(tops):
            raise ctx.error(f"'{x}' {ctx.shape(x)} does not split into {len(tops)} equal parts along axis {axis}")
        return [make_op("Split", [x], tops, axis=axis)], []
    if len(points) != len(tops) - 1:
        raise ctx.error(f"{len(points)} slice points for {len(tops)} tops (need {len(tops) - 1})")
    size = ctx.shape(x)[axis]
    edges = [0] + points + [size]
    sizes = [b - a for a, b in zip(edges[:-1], edges[1:])]
    if min(sizes) < 1:
        raise ctx.error(f"slice points {points} do not increase inside (0, {size}) along axis {axis} of '{x}'")
    return [make_op("Split", [x], tops, axis=axis, split=sizes)], []


def _reshape(ctx, x, y, shape):
    return make_op("Reshape", [x], [y, ctx.fresh(f"_{y}_dims")], shape=[int(d) for d in shape])


@register("Reshape")
def translate_reshape(layer, pretrained_blobs, is_test, ctx, **_):
    """Caffe's shape (0 = copy, -1 = infer) over the axes [axis, axis + num_axes)."""
    p = layer.reshape_param
    x, y = layer.bottom[0], layer.top[0]
    dims = [int(d) for d in p.shape.dim]
    if dims.count(-1) > 1:
        raise ctx.error(f"shape {dims} has more than one -1")
    if p.axis == 0 and p.num_axes == -1:
        return [_reshape(ctx, x, y, dims)], []
    rank = ctx.rank(x)
    start = p.axis if p.axis >= 0 else rank + p.axis + 1
    end = rank if p.num_axes == -1 else start + p.num_axes
    if not 0 <= start <= end <= rank:
        raise ctx.error(f"axis {p.axis} / num_axes {p.num_axes} do not fit '{x}' of shape {ctx.shape(x)}")
    tail = ctx.shape(x)[end:]
    # a 0 in Caffe2's shape copies the input dim at the same position: right for the head
    # always, for the tail only when the reshaped part keeps its length
    tail_spec = [0] * len(tail) if len(dims) == end - start else list(tail)
    return [_reshape(ctx, x, y, [0] * start + dims + tail_spec)], []


@register("Flatten")
def translate_flatten(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.flatten_param
    x, y = layer.bottom[0], layer.top[0]
    if not ctx.has_shape(x) and p.axis == 1 and p.end_axis == -1:
        return [make_op("Flatten", [x], [y])], []
    rank = ctx.rank(x)
    start, end = ctx.axis(p.axis, x, "axis"), ctx.axis(p.end_axis, x, "end_axis")
    if end < start:
        raise ctx.error(f"end_axis {p.end_axis} comes before axis {p.axis} for '{x}' {ctx.shape(x)}")
    if end == rank - 1 and start == 0:
        return [make_op("FlattenToVec", [x], [y])], []
    if end == rank - 1 and start == 1:
        return [make_op("Flatten", [x], [y])], []
    return [_reshape(ctx, x, y, [0] * start + [-1] + list(ctx.shape(x)[end + 1:]))], []


@register("Permute")
def translate_permute(layer, pretrained_blobs, is_test, ctx, **_):
    """SSD's Permute: the listed axes first, the others after them in order."""
    x, y = layer.bottom[0], layer.top[0]
    rank = ctx.rank(x)
    order = [int(a) for a in layer.permute_param.order]
    if len(set(order)) != len(order) or any(not 0 <= a < rank for a in order):
        raise ctx.error(f"order {order} is not a list of distinct axes of '{x}' {ctx.shape(x)}")
    perm = order + [a for a in range(rank) if a not in order]
    if perm == list(range(rank)):
        return ([make_op("Copy", [x], [y])] if x != y else []), []
    return [make_op("Transpose", [x], [y], axes=perm)], []


@register("Crop")
def translate_crop(layer, pretrained_blobs, is_test, ctx, **_):
    """bottom[0] cut to bottom[1]'s dims from ``axis`` on, at the given offsets (a Slice)."""
    p = layer.crop_param
    x, ref, y = layer.bottom[0], layer.bottom[1], layer.top[0]
    shape, ref_shape = ctx.shape(x), ctx.shape(ref)
    axis = ctx.axis(p.axis, x)
    cropped = len(shape) - axis
    offsets = [int(o) for o in p.offset]
    if len(offsets) == 0:
        offsets = [0] * cropped
    elif len(offsets) == 1:
        offsets = offsets * cropped
    elif len(offsets) != cropped:
        raise ctx.error(f"{len(offsets)} offsets for the {cropped} axes from {axis} on")
    if len(ref_shape) != len(shape):
        raise ctx.error(f"'{x}' {shape} and the reference '{ref}' {ref_shape} differ in rank")
    starts = [0] * axis + offsets
    ends = [-1] * axis + [o + ref_shape[axis + i] for i, o in enumerate(offsets)]
    for i in range(axis, len(shape)):
        if ends[i] > shape[i]:
            raise ctx.error(f"offset {starts[i]} + reference size {ref_shape[i]} exceeds '{x}' {shape} on axis {i}")
    return [make_op("Slice", [x], [y], starts=starts, ends=ends)], []


@register("Eltwise")
def translate_eltwise(layer, pretrained_blobs, is_test, ctx, **_):
    """SUM (with coefficients: WeightedSum), PROD (a chain of Mul), MAX (Max)."""
    p = layer.eltwise_param
    E = caffe_pb2.EltwiseParameter
    xs, y = list(layer.bottom), layer.top[0]
    if len(xs) < 2:
        raise ctx.error(f"needs at least 2 bottoms, got {xs}")
    if len(p.coeff) and p.operation != E.SUM:
        raise ctx.error("coefficients are only allowed with operation SUM")
    if p.operation == E.MAX:
        return [make_op("Max", xs, [y])], []
    if p.operation == E.PROD:
        ops, acc = [], xs[0]
        for i, other in enumerate(xs[1:]):
            out = y if i == len(xs) - 2 else (acc if acc not in xs else ctx.fresh(f"{y}_prod"))
            ops.append(make_op("Mul", [acc, other], [out]))
            acc = out
        return ops, []
    coeffs = [float(c) for c in p.coeff]
    if coeffs and len(coeffs) != len(xs):
        raise ctx.error(f"{len(coeffs)} coefficients for {len(xs)} bottoms")
    if not coeffs or all(c == 1.0 for c in coeffs):
        return [make_op("Sum", xs, [y])], []
    params = [ctx.tensor(f"{y}_coeff{i}", np.array([c], np.float32)) for i, c in enumerate(coeffs)]
    inputs = [name for pair in zip(xs, (t.name for t in params)) for name in pair]
    return [make_op("WeightedSum", inputs, [y])], params


@register("Reduction")
def translate_reduction(layer, pretrained_blobs, is_test, ctx, **_):
    """SUM / ASUM / SUMSQ / MEAN over every axis from ``axis`` on, times ``coeff``."""
    p = layer.reduction_param
    R = caffe_pb2.ReductionParameter
    x, y = layer.bottom[0], layer.top[0]
    axis = ctx.axis(p.axis, x)
    n = ctx.rank(x) - axis
    ops, src = [], x
    if p.operation in (R.ASUM, R.SUMSQ):
        src = ctx.fresh(f"{y}_reduction_in")
        ops.append(make_op("Abs" if p.operation == R.ASUM else "Sqr", [x], [src]))
    op_type = "ReduceBackMean" if p.operation == R.MEAN else "ReduceBackSum"
    ops.append(make_op(op_type, [src], [y], num_reduce_dim=n))
    if p.coeff != 1.0:
        ops.append(make_op("Scale", [y], [y], scale=float(p.coeff)))
    return ops, []


@register("Parameter")
def translate_parameter(layer, pretrained_blobs, is_test, ctx, **_):
    """A learned blob as a layer output: a parameter tensor copied to the top."""
    need_blobs(ctx, pretrained_blobs, 1, "the parameter")
    t = ctx.tensor(f"{layer.top[0]}_param", pretrained_blobs[0])
    return [make_op("Copy", [t.name], [layer.top[0]])], [t]
