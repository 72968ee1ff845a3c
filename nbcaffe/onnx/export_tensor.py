"""Caffe2 -> ONNX exporters: arithmetic (legacy ``broadcast=1, axis`` included), variadic
Sum/Max/Min, comparisons and logic, shapes and data movement, fills, reductions, casts,
padding and resizing.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import utils
from nbcaffe.onnx.frontend import exporter
from nbcaffe.onnx.helper import onnx_elem_type
from nbcaffe.ops._array_util import order_axis

INT64_MAX = np.iinfo(np.int64).max

# ---------------------------------------------------------------------- arithmetic

_BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow", "EQ": "Equal", "LT": "Less",
           "GT": "Greater", "LE": "LessOrEqual", "GE": "GreaterOrEqual", "And": "And", "Or": "Or", "Xor": "Xor"}


def _legacy_b(ctx, op, args):
    """Input B reshaped so that NumPy broadcasting does what Caffe2's ``broadcast=1, axis`` did
    (B's dims aligned at ``axis`` of A, trailing 1s added)."""
    a, b = op.input[:2]
    if not args.get("broadcast", 0):
        return b
    a_shape, b_shape = ctx.static_shape(a), ctx.static_shape(b)
    axis = args["axis"]
    if args.get("axis_str"):
        axis = args["order"].index(args["axis_str"])
    if axis < 0:
        axis = len(a_shape) - len(b_shape)
    trailing = len(a_shape) - axis - len(b_shape)
    if trailing <= 0:
        return b
    shape = list(b_shape) + [1] * trailing
    value = ctx.value(b)
    if value is not None:
        return ctx.const(value.reshape(shape), "b_aligned")
    return ctx.node("Reshape", [b, ctx.ints(shape, "b_shape")])


@exporter(*_BINARY)
def _binary(ctx, op):
    args = ctx.args(op)
    if op.type == "Pow" and len(op.input) == 1:
        exponent = ctx.const(np.array(args["exponent"], ctx.dtype(op.input[0]) or np.float32), "exponent")
        ctx.node("Pow", [op.input[0], exponent], [op.output[0]])
        return
    ctx.node(_BINARY[op.type], [op.input[0], _legacy_b(ctx, op, args)], [op.output[0]])


@exporter("NE")
def _not_equal(ctx, op):
    ctx.node("Not", [ctx.node("Equal", list(op.input[:2]))], [op.output[0]])


@exporter("Sum", "Max", "Min")
def _variadic(ctx, op):
    ctx.node(op.type, list(op.input), [op.output[0]])


@exporter("Clip")
def _clip(ctx, op):
    args = ctx.args(op)
    x = op.input[0]
    dtype = ctx.dtype(x) or np.dtype(np.float32)
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    lo = ctx.const(np.array(max(args["min"], info.min), dtype), "min")
    hi = ctx.const(np.array(min(args["max"], info.max), dtype), "max")
    # Caffe2 applies the max with min first, then the min with max (min > max gives max), as ONNX
    ctx.node("Clip", [x, lo, hi], [op.output[0]])


@exporter("Where")
def _where(ctx, op):
    ctx.node("Where", list(op.input[:3]), [op.output[0]])


@exporter("IsInf")
def _is_inf(ctx, op):
    args = ctx.args(op)
    ctx.node("IsInf", [op.input[0]], [op.output[0]], detect_negative=int(args["detect_negative"]),
             detect_positive=int(args["detect_positive"]))


# ---------------------------------------------------------------------- copies and casts


@exporter("Copy", "Identity", "StopGradient", "EnsureCPUOutput", "CopyFromCPUInput", "CopyCPUToGPU", "CopyGPUToCPU",
          "Alias")
def _identity(ctx, op):
    ctx.node("Identity", [op.input[0]], [op.output[0]])


@exporter("Cast")
def _cast(ctx, op):
    args = ctx.args(op)
    if args["to"] is None:
        dtype = ctx.dtype(op.input[1])
    else:
        from nbcaffe.ops.tensor import cast_target

        dtype = cast_target(args["to"])
    ctx.node("Cast", [op.input[0]], [op.output[0]], to=onnx_elem_type(dtype))


# ---------------------------------------------------------------------- fills in the predict net


@exporter("ConstantFill")
def _constant_fill(ctx, op):
    args = ctx.args(op)
    if args["dtype"] is not None:
        dtype = utils.dtype_of(args["dtype"])
    else:
        dtype = np.dtype(np.int64) if isinstance(args["value"], int) and not isinstance(args["value"], bool) \
            else np.dtype(np.float32)
    value = np.array([args["value"]], dtype)
    if op.input:
        if args["input_as_shape"]:
            shape = op.input[0]
        else:
            shape = ctx.node("Shape", [op.input[0]])
        if args["extra_shape"]:
            shape = ctx.node("Concat", [shape, ctx.ints(args["extra_shape"], "extra")], axis=0)
        ctx.node("ConstantOfShape", [shape], [op.output[0]], value=_tensor(value))
        return
    shape = list(args["shape"]) + list(args["extra_shape"])
    ctx.node("Constant", [], [op.output[0]], value=_tensor(np.full(shape, value[0], dtype)))


def _tensor(array):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array))


@exporter("GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill", "GivenTensorInt64Fill",
          "GivenTensorInt16Fill", "GivenTensorBoolFill")
def _given_fill(ctx, op):
    value = ctx.value(op.output[0])
    if value is None:  # evaluate it with nbcaffe's own op
        from nbcaffe import workspace

        ws = workspace.Workspace("_onnx_export_fill")
        ws.run_operator_once(op)
        value = ws.fetch_blob(op.output[0])
    ctx.node("Constant", [], [op.output[0]], value=_tensor(value))


# ---------------------------------------------------------------------- shapes


@exporter("Reshape")
def _reshape(ctx, op):
    args = ctx.args(op)
    x = op.input[0]
    shape = op.input[1] if len(op.input) > 1 else ctx.ints(args["shape"], "shape")
    if len(op.input) > 1 and ctx.dtype(shape) != np.dtype(np.int64):
        shape = ctx.node("Cast", [shape], to=onnx_elem_type(np.int64))
    ctx.node("Reshape", [x, shape], [op.output[0]])
    if len(op.output) > 1 and op.output[1] in ctx.consumed:
        ctx.node("Shape", [x], [op.output[1]])


@exporter("Flatten")
def _flatten(ctx, op):
    ctx.node("Flatten", [op.input[0]], [op.output[0]], axis=int(ctx.args(op)["axis"]))


@exporter("FlattenToVec")
def _flatten_to_vec(ctx, op):
    ctx.node("Reshape", [op.input[0], ctx.ints([-1], "vec")], [op.output[0]])


@exporter("Transpose")
def _transpose(ctx, op):
    axes = ctx.args(op)["axes"]
    ctx.node("Transpose", [op.input[0]], [op.output[0]], perm=list(axes) if axes else None)


@exporter("NCHW2NHWC", "NHWC2NCHW")
def _order_switch(ctx, op):
    rank = ctx.rank(op.input[0])
    perm = [0] + list(range(2, rank)) + [1] if op.type == "NCHW2NHWC" else [0, rank - 1] + list(range(1, rank - 1))
    ctx.node("Transpose", [op.input[0]], [op.output[0]], perm=perm)


@exporter("Squeeze")
def _squeeze(ctx, op):
    ctx.node("Squeeze", [op.input[0], ctx.ints(sorted(set(ctx.args(op)["dims"])), "axes")], [op.output[0]])


@exporter("ExpandDims")
def _expand_dims(ctx, op):
    ctx.node("Unsqueeze", [op.input[0], ctx.ints(sorted(set(ctx.args(op)["dims"])), "axes")], [op.output[0]])


def _concat_axis(ctx, op, args):
    if args["axis"] is not None:
        return args["axis"]
    return order_axis(args["order"])


@exporter("Concat", "DepthConcat")
def _concat(ctx, op):
    args = ctx.args(op)
    axis = _concat_axis(ctx, op, args)
    inputs = list(op.input)
    if args["add_axis"]:
        inputs = [ctx.node("Unsqueeze", [x, ctx.ints([axis], "axis")]) for x in inputs]
    ctx.node("Concat", inputs, [op.output[0]], axis=axis)
    if len(op.output) > 1 and op.output[1] in ctx.consumed:  # split_info: sizes along the axis (int32)
        sizes = [1 if args["add_axis"] else ctx.static_shape(x)[axis] for x in op.input]
        ctx.node("Constant", [], [op.output[1]], value=_tensor(np.array(sizes, np.int32)))


@exporter("Split", "DepthSplit")
def _split(ctx, op):
    args = ctx.args(op)
    axis = _concat_axis(ctx, op, args)
    x = op.input[0]
    if args["add_axis"]:
        raise ctx.error("Split with add_axis=1 is not exported")
    if len(op.input) > 1:
        split = ctx.node("Cast", [op.input[1]], to=onnx_elem_type(np.int64))
    elif args["split"]:
        split = ctx.ints(args["split"], "split")
    else:
        split = None
    ctx.node("Split", [x] + ([split] if split else []), list(op.output), axis=axis,
             num_outputs=None if split else len(op.output))


@exporter("Slice")
def _slice(ctx, op):
    """Caffe2 indices: negative i means size + 1 + i (so -1 is the end); ONNX: size + i."""
    args = ctx.args(op)
    if len(op.input) > 1:
        raise ctx.error("Slice with starts/ends inputs is not exported (give them as arguments)")
    starts, ends = list(args["starts"]), list(args["ends"])

    def onnx_index(i):
        if i >= 0:
            return i
        return INT64_MAX if i + 1 == 0 else i + 1

    ctx.node("Slice", [op.input[0], ctx.ints([onnx_index(s) for s in starts], "starts"),
                       ctx.ints([onnx_index(e) for e in ends], "ends"),
                       ctx.ints(range(len(starts)), "axes")], [op.output[0]])


@exporter("StridedSlice")
def _strided_slice(ctx, op):
    args = ctx.args(op)
    n = len(args["starts"])
    ctx.node("Slice", [op.input[0], ctx.ints(args["starts"], "starts"), ctx.ints(args["ends"], "ends"),
                       ctx.ints(args["axes"] or range(n), "axes"), ctx.ints(args["steps"] or [1] * n, "steps")],
             [op.output[0]])


@exporter("Gather")
def _gather(ctx, op):
    ctx.node("Gather", list(op.input[:2]), [op.output[0]], axis=int(ctx.args(op)["axis"]))


@exporter("Shape")
def _shape(ctx, op):
    axes = ctx.args(op)["axes"]
    shape = ctx.node("Shape", [op.input[0]], None if axes else [op.output[0]])
    if axes:
        ctx.node("Gather", [shape, ctx.ints(axes, "axes")], [op.output[0]], axis=0)


@exporter("Size")
def _size(ctx, op):
    ctx.node("Size", [op.input[0]], [op.output[0]])


@exporter("Range")
def _range(ctx, op):
    inputs = list(op.input)
    if len(inputs) == 1:
        dtype = ctx.dtype(inputs[0]) or np.int64
        inputs = [ctx.const(np.array(0, dtype), "start"), inputs[0], ctx.const(np.array(1, dtype), "delta")]
    ctx.node("Range", inputs, [op.output[0]])


@exporter("Expand")
def _expand(ctx, op):
    ctx.node("Expand", list(op.input[:2]), [op.output[0]])


@exporter("Tile")
def _tile(ctx, op):
    args = ctx.args(op)
    rank = ctx.rank(op.input[0])
    axis = args["axis"] + rank if args["axis"] < 0 else args["axis"]
    repeats = [1] * rank
    repeats[axis] = int(args["tiles"])
    ctx.node("Tile", [op.input[0], ctx.ints(repeats, "repeats")], [op.output[0]])


@exporter("ChannelShuffle")
def _channel_shuffle(ctx, op):
    args = ctx.args(op)
    shape = ctx.static_shape(op.input[0])
    g = int(args["group"])
    if args["order"] != "NCHW":
        raise ctx.error("ChannelShuffle in NHWC is not exported")
    n, c = shape[:2]
    split = ctx.node("Reshape", [op.input[0], ctx.ints([n, g, c // g, -1], "split")])
    swapped = ctx.node("Transpose", [split], perm=[0, 2, 1, 3])
    ctx.node("Reshape", [swapped, ctx.ints(shape, "shape")], [op.output[0]])


# ---------------------------------------------------------------------- reductions


@exporter("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")
def _reduce(ctx, op):
    args = ctx.args(op)
    axes = list(args["axes"]) or list(range(ctx.rank(op.input[0])))
    ctx.node(op.type, [op.input[0], ctx.ints(axes, "axes")], [op.output[0]], keepdims=int(args["keepdims"]))


@exporter("ReduceFrontSum", "ReduceFrontMean", "ReduceFrontMax", "ReduceBackSum", "ReduceBackMean", "ReduceBackMax")
def _reduce_front_back(ctx, op):
    n = int(ctx.args(op)["num_reduce_dim"])
    rank = ctx.rank(op.input[0])
    axes = list(range(n)) if "Front" in op.type else list(range(rank - n, rank))
    kind = op.type.replace("Front", "").replace("Back", "")
    ctx.node(kind, [op.input[0], ctx.ints(axes, "axes")], [op.output[0]], keepdims=0)


@exporter("ArgMax", "ArgMin")
def _arg(ctx, op):
    args = ctx.args(op)
    ctx.node(op.type, [op.input[0]], [op.output[0]], axis=int(args["axis"]), keepdims=int(args["keepdims"]))


# ---------------------------------------------------------------------- padding and resizing


@exporter("PadImage")
def _pad_image(ctx, op):
    from nbcaffe.ops.pad_resize import PadImage  # noqa: F401  (documents the source of the semantics)

    args = ctx.args(op)
    shape = ctx.static_shape(op.input[0])
    y_shape = ctx.static_shape(op.output[0])
    order = args["order"]
    hw = (2, 3) if order == "NCHW" else (1, 2)
    heads = [0] * 4
    tails = [0] * 4
    # the pads are what the output grew by; Caffe2's pad spellings resolve to these
    t = _pad_tlbr(args)
    heads[hw[0]], heads[hw[1]], tails[hw[0]], tails[hw[1]] = t
    if [y_shape[d] - shape[d] for d in hw] != [t[0] + t[2], t[1] + t[3]]:
        raise ctx.error(f"could not resolve the pads of PadImage ({t})")
    mode = args["mode"]
    value = ctx.const(np.array(args["value"], ctx.dtype(op.input[0]) or np.float32), "value")
    ctx.node("Pad", [op.input[0], ctx.ints(heads + tails, "pads"), value], [op.output[0]], mode=mode)


def _pad_tlbr(args):
    if args["pads"] is not None:
        return tuple(int(p) for p in args["pads"])
    if args["pad"] is not None:
        return (int(args["pad"]),) * 4
    return tuple(int(args[k] or 0) for k in ("pad_t", "pad_l", "pad_b", "pad_r"))


@exporter("Pad")
def _pad(ctx, op):
    args = ctx.args(op)
    value = ctx.const(np.array(args["value"], ctx.dtype(op.input[0]) or np.float32), "value")
    ctx.node("Pad", [op.input[0], ctx.ints(args["pads"], "pads"), value], [op.output[0]], mode=args["mode"])


@exporter("ResizeNearest")
def _resize_nearest(ctx, op):
    args = ctx.args(op)
    if len(op.input) > 1:
        raise ctx.error("ResizeNearest with a scales input is not exported")
    scales = [1.0, 1.0, args["height_scale"], args["width_scale"]] if args["order"] == "NCHW" else \
        [1.0, args["height_scale"], args["width_scale"], 1.0]
    ctx.node("Resize", [op.input[0], "", ctx.const(np.array(scales, np.float32), "scales")], [op.output[0]],
             mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


@exporter("Resize")
def _resize(ctx, op):
    args = ctx.args(op)
    roi = ctx.const(np.array(args["roi"], np.float32), "roi") if args["roi"] else ""
    if args["sizes"]:
        inputs = [op.input[0], roi, "", ctx.ints(args["sizes"], "sizes")]
    else:
        inputs = [op.input[0], roi, ctx.const(np.array(args["scales"], np.float32), "scales")]
    attrs = dict(mode=args["mode"], coordinate_transformation_mode=args["coordinate_transformation_mode"],
                 nearest_mode=args["nearest_mode"], cubic_coeff_a=float(args["cubic_coeff_a"]),
                 exclude_outside=int(args["exclude_outside"]),
                 extrapolation_value=float(args["extrapolation_value"]), antialias=int(args["antialias"]))
    ctx.node("Resize", inputs, [op.output[0]], **attrs)


@exporter("CumSum")
def _cumsum(ctx, op):
    args = ctx.args(op)
    ctx.node("CumSum", [op.input[0], ctx.const(np.array(args["axis"], np.int64), "axis")], [op.output[0]],
             exclusive=int(args["exclusive"]), reverse=int(args["reverse"]))


@exporter("TopK")
def _topk(ctx, op):
    args = ctx.args(op)
    outputs = list(op.output) + ([ctx.tmp("indices")] if len(op.output) == 1 else [])
    ctx.node("TopK", [op.input[0], ctx.ints([args["k"]], "k")], outputs, axis=int(args["axis"]),
             largest=int(args["largest"]), sorted=1)


@exporter("GatherElements")
def _gather_elements(ctx, op):
    ctx.node("GatherElements", list(op.input[:2]), [op.output[0]], axis=int(ctx.args(op)["axis"]))


@exporter("Trilu")
def _trilu(ctx, op):
    args = ctx.args(op)
    ctx.node("Trilu", [op.input[0], ctx.const(np.array(args["k"], np.int64), "k")], [op.output[0]],
             upper=int(args["upper"]))


@exporter("WeightedSum")
def _weighted_sum(ctx, op):
    """Σ w_i X_i: each 1-element weight scales its X (broadcast), then Sum."""
    terms = [ctx.node("Mul", [op.input[k], op.input[k + 1]]) for k in range(0, len(op.input), 2)]
    ctx.node("Sum" if len(terms) > 1 else "Identity", terms, [op.output[0]])


@exporter("MVN")
def _mvn(ctx, op):
    """(X - mean) / (std + eps) over the axes after C (or after N with across_channels);
    Caffe's divisor, so the formula rather than MeanVarianceNormalization."""
    args = ctx.args(op)
    x = op.input[0]
    rank = ctx.rank(x)
    axes = ctx.ints(range(1 if args["across_channels"] else 2, rank), "axes")
    centred = ctx.node("Sub", [x, ctx.node("ReduceMean", [x, axes], keepdims=1)])
    if not args["normalize_variance"]:
        ctx.node("Identity", [centred], [op.output[0]])
        return
    dtype = ctx.dtype(x) or np.float32
    var = ctx.node("ReduceMean", [ctx.node("Mul", [centred, centred]), axes], keepdims=1)
    std_eps = ctx.node("Add", [ctx.node("Sqrt", [var]), ctx.const(np.array(args["eps"], dtype), "eps")])
    ctx.node("Div", [centred, std_eps], [op.output[0]])
