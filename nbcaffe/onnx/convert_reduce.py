"""ONNX -> Caffe2 converters: reductions, ArgMax/ArgMin, DepthToSpace/SpaceToDepth,
Upsample/Resize.

Reductions take ``axes`` as an attribute before opset 13 (ReduceSum) / 18 (the others) and
as an optional input after; no axes means all (unless ``noop_with_empty_axes``).  The
reductions nbcaffe has no op for are compositions (L1 = sum |x|, L2 = sqrt(sum x²),
LogSumExp = max + log(sum(exp(x - max))), ...).
"""

from __future__ import annotations

import numpy as np

from nbcaffe.onnx.converter import converter
from nbcaffe.onnx.helper import caffe2_data_type


def _reduce_axes(node, since):
    """(normalised axes or [] for all, keepdims), or None for an Identity (noop)."""
    rank = node.rank(0)
    if node.opset < since:
        axes = node.attr("axes")
    else:
        axes = node.value(1, "axes") if node.has_input(1) else None
    axes = [] if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if not axes and node.opset >= since and node.attr("noop_with_empty_axes", 0):
        return None
    axes = sorted({a + rank if a < 0 else a for a in axes})
    return axes, int(node.attr("keepdims", 1))


def _axes_since(op_type):
    return 13 if op_type == "ReduceSum" else 18


_DIRECT = {"ReduceSum": "ReduceSum", "ReduceMean": "ReduceMean", "ReduceMax": "ReduceMax", "ReduceMin": "ReduceMin"}


def _reduce(node, caffe2_type, x, out, axes, keepdims):
    return node.op(caffe2_type, [x], [out], axes=axes, keepdims=keepdims)


@converter(*_DIRECT)
def _direct(node):
    spec = _reduce_axes(node, _axes_since(node.op_type))
    if spec is None:
        node.op("Copy", node.inputs[:1], node.outputs[:1])
        return
    axes, keepdims = spec
    if _empty_reduction(node, axes):
        return
    x, out = node.inputs[0], node.outputs[0]
    if node.dtype(0) == np.dtype(bool) and node.op_type in ("ReduceMax", "ReduceMin"):
        # no bool max in nbcaffe: max/min over 0/1 integers
        as_int = node.op("Cast", [x], [node.tmp("int")], to=caffe2_data_type(np.int32))
        reduced = _reduce(node, _DIRECT[node.op_type], as_int, node.tmp("red"), axes, keepdims)
        node.op("Cast", [reduced], [out], to=caffe2_data_type(np.bool_))
        return
    _reduce(node, _DIRECT[node.op_type], x, out, axes, keepdims)


# value of a reduction over zero elements (ONNX: the identity of the reduction)
_EMPTY_VALUE = {"ReduceSum": 0.0, "ReduceMean": np.nan, "ReduceMax": -np.inf, "ReduceMin": np.inf,
                "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceLogSum": -np.inf,
                "ReduceLogSumExp": -np.inf, "ReduceProd": 1.0}


def _empty_reduction(node, axes) -> bool:
    """Reductions over zero elements become a fill (nbcaffe's max/min refuse empty input)."""
    shape = node.shape(0)
    if shape is None or None in shape:
        return False
    reduced = axes or range(len(shape))
    if not any(shape[a] == 0 for a in reduced):
        return False
    out_shape = node.static_shape(node.outputs[0])
    dtype = node.dtype(0)
    value = _EMPTY_VALUE[node.op_type]
    if dtype.kind == "b":
        value = node.op_type == "ReduceMin"
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        value = {np.inf: info.max, -np.inf: info.min}.get(value, value)
        value = 0 if value != value else int(value)
    node.set_constant(0, np.full(out_shape, value, dtype))
    return True


@converter("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
def _composed(node):
    spec = _reduce_axes(node, 18)
    x, out = node.inputs[0], node.outputs[0]
    if spec is None:
        node.op("Copy", [x], [out])
        return
    axes, keepdims = spec
    if _empty_reduction(node, axes):
        return
    t = node.op_type
    if t == "ReduceL1":
        a = node.op("Abs", [x], [node.tmp("abs")])
        _reduce(node, "ReduceSum", a, out, axes, keepdims)
    elif t in ("ReduceL2", "ReduceSumSquare"):
        sq = node.op("Sqr", [x], [node.tmp("sq")])
        if t == "ReduceSumSquare":
            _reduce(node, "ReduceSum", sq, out, axes, keepdims)
        else:
            s = _reduce(node, "ReduceSum", sq, node.tmp("sum"), axes, keepdims)
            node.op("Sqrt", [s], [out])
    elif t == "ReduceLogSum":
        s = _reduce(node, "ReduceSum", x, node.tmp("sum"), axes, keepdims)
        node.op("Log", [s], [out])
    else:  # LogSumExp, stable: m + log(sum(exp(x - m)))
        m = _reduce(node, "ReduceMax", x, node.tmp("max"), axes, 1)
        d = node.op("Sub", [x, m], [node.tmp("d")])
        e = node.op("Exp", [d], [node.tmp("e")])
        s = _reduce(node, "ReduceSum", e, node.tmp("sum"), axes, 1)
        ls = node.op("Log", [s], [node.tmp("logsum")])
        if keepdims:
            node.op("Add", [ls, m], [out])
        else:
            total = node.op("Add", [ls, m], [node.tmp("lse")])
            dims = axes or list(range(node.rank(0)))
            node.op("Squeeze", [total], [out], dims=dims)


def _arg(node, caffe2_type):
    rank = node.rank(0)
    axis = int(node.attr("axis", 0))
    axis = axis + rank if axis < 0 else axis
    keepdims = int(node.attr("keepdims", 1))
    x = node.inputs[0]
    if not node.attr("select_last_index", 0):
        node.op(caffe2_type, [x], node.outputs[:1], axis=axis, keepdims=keepdims)
        return
    # last index = (n - 1) - (first index in the reversed axis)
    n = node.static_shape(0)[axis]
    flipped = node.op("StridedSlice", [x], [node.tmp("flip")], starts=[-1], ends=[-(2 ** 62)], axes=[axis],
                      steps=[-1])
    idx = node.op(caffe2_type, [flipped], [node.tmp("idx")], axis=axis, keepdims=keepdims)
    node.op("Sub", [node.const(np.array(n - 1, np.int64), "last"), idx], node.outputs[:1])


@converter("ArgMax")
def _argmax(node):
    _arg(node, "ArgMax")


@converter("ArgMin")
def _argmin(node):
    _arg(node, "ArgMin")


@converter("DepthToSpace")
def _depth_to_space(node):
    n, c, h, w = node.static_shape(0)
    b = int(node.attr("blocksize"))
    mode = node.attr("mode", "DCR")
    if mode == "DCR":
        split, perm = [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]
    elif mode == "CRD":
        split, perm = [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
    else:
        raise node.error(f"mode '{mode}' is not DCR or CRD")
    _reshape_transpose(node, split, perm, [n, c // (b * b), h * b, w * b])


@converter("SpaceToDepth")
def _space_to_depth(node):
    n, c, h, w = node.static_shape(0)
    b = int(node.attr("blocksize"))
    mode = node.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise node.error(f"mode '{mode}' is not DCR or CRD")
    perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
    _reshape_transpose(node, [n, c, h // b, b, w // b, b], perm, [n, c * b * b, h // b, w // b])


def _reshape_transpose(node, split, perm, final):
    if 0 in split or 0 in final:
        raise node.error("zero-size dims are not supported here")
    a = node.op("Reshape", node.inputs[:1], [node.tmp("split"), node.tmp("old1")], shape=split)
    t = node.op("Transpose", [a], [node.tmp("perm")], axes=perm)
    node.op("Reshape", [t], [node.outputs[0], node.tmp("old2")], shape=final)


# ---------------------------------------------------------------------- Upsample / Resize


def _resize_spec(node):
    """(scales or None, sizes or None) as floats / ints over every dim."""
    rank = node.rank(0)
    if node.op_type == "Upsample":
        if node.opset < 9:
            return [float(s) for s in node.attr("scales")], None
        return [float(s) for s in np.asarray(node.value(1, "scales")).reshape(-1)], None
    if node.opset < 11:
        return [float(s) for s in np.asarray(node.value(1, "scales")).reshape(-1)], None
    scales = node.optional_value(2, "scales")
    sizes = node.optional_value(3, "sizes")
    scales = None if scales is None or np.asarray(scales).size == 0 else [float(s) for s in np.ravel(scales)]
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else [int(s) for s in np.ravel(sizes)]
    axes = node.attr("axes")
    if axes is not None:
        axes = [a + rank if a < 0 else a for a in axes]
        if scales is not None:
            full = [1.0] * rank
            for a, s in zip(axes, scales):
                full[a] = s
            scales = full
        if sizes is not None:
            shape = node.static_shape(0)
            full = list(shape)
            for a, s in zip(axes, sizes):
                full[a] = s
            sizes = full
    return scales, sizes


@converter("Upsample", "Resize")
def _resize(node):
    scales, sizes = _resize_spec(node)
    mode = node.attr("mode", "nearest")
    if node.op_type == "Upsample" or node.opset < 11:
        coord = "asymmetric"
        nearest = "floor" if (node.op_type == "Upsample" or node.opset < 11) else "round_prefer_floor"
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
    if mode == "linear" or mode == "bilinear":
        mode = "linear"
    args = dict(mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest,
                cubic_coeff_a=float(node.attr("cubic_coeff_a", -0.75)),
                exclude_outside=int(node.attr("exclude_outside", 0)),
                extrapolation_value=float(node.attr("extrapolation_value", 0.0)),
                antialias=int(node.attr("antialias", 0)))
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        shape = node.static_shape(0)
        axes = node.attr("axes")
        rank = len(shape)
        axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
        ratios = [sizes[a] / shape[a] for a in axes]
        ratio = min(ratios) if policy == "not_larger" else max(ratios)
        scales = [1.0] * rank
        for a in axes:
            scales[a] = ratio
        sizes = [int(np.floor(shape[d] * scales[d] + 0.5)) if d in axes else shape[d] for d in range(rank)]
    if coord == "tf_crop_and_resize":
        roi = node.value(1, "roi")
        args["roi"] = [float(r) for r in np.ravel(roi)]
        axes = node.attr("axes")
        if axes is not None:
            rank = node.rank(0)
            full = [0.0] * rank + [1.0] * rank
            axes = [a + rank if a < 0 else a for a in axes]
            for k, a in enumerate(axes):
                full[a], full[a + rank] = args["roi"][k], args["roi"][k + len(axes)]
            args["roi"] = full
    if sizes is not None:
        args["sizes"] = sizes
        if scales is not None:
            args["scales"] = scales
    else:
        args["scales"] = scales
    node.op("Resize", node.inputs[:1], node.outputs[:1], **args)
