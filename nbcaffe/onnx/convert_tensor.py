"""ONNX -> Caffe2 converters: shapes and data movement (Reshape, Flatten, Transpose, Concat,
Split, Squeeze/Unsqueeze, Slice, Gather, Pad, Expand, Tile, Cast, constants, Shape/Size/Range,
reductions, ArgMax/ArgMin, DepthToSpace/SpaceToDepth, Upsample/Resize).

Attribute-like inputs (axes, starts/ends, pads, split sizes, repeats) are read with
``node.value``: constants here, or graph inputs the rep specialises on (converter.py).
"""

from __future__ import annotations

import numpy as np

from nbcaffe.onnx.converter import converter
from nbcaffe.onnx.helper import caffe2_data_type, np_dtype


def _ints(value) -> list:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _norm_axes(node, axes, rank) -> list:
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise node.error(f"axis {a} is out of range for rank {rank}")
        out.append(a + rank if a < 0 else a)
    return out


def _axes_input_or_attr(node, since, index=1, name="axes"):
    """The ``axes`` of a node: an attribute before opset ``since``, an optional input after."""
    if node.opset < since:
        axes = node.attr(name)
        return None if axes is None else _ints(axes)
    if node.has_input(index):
        return _ints(node.value(index, name))
    return None


@converter("Identity")
def _identity(node):
    node.op("Copy", node.inputs[:1], node.outputs[:1])


@converter("Reshape")
def _reshape(node):
    x, out = node.inputs[0], node.outputs[0]
    if node.opset < 5:
        node.op("Reshape", [x], [out], shape=_ints(node.attr("shape")))
        return
    allowzero = node.opset >= 14 and node.attr("allowzero", 0)
    if node.is_constant(1):
        shape = _ints(node.value(1))
        if allowzero and 0 in shape:
            # a literal 0 dim (Caffe2's 0 copies the input dim): the result is empty
            if -1 in shape:
                raise node.error(f"allowzero=1 with both 0 and -1 in shape {shape}")
            node.op("ConstantFill", [], [out], shape=shape, dtype=caffe2_data_type(node.dtype(0), node.where()))
            return
        node.op("Reshape", [x], [out, node.tmp("old_shape")], shape=shape)
        return
    if allowzero:
        node.value(1, "shape")  # specialise: a 0 means a zero dim, decided per value
    node.op("Reshape", [x, node.inputs[1]], [out, node.tmp("old_shape")])


@converter("Flatten")
def _flatten(node):
    axis = int(node.attr("axis", 1))
    if axis < 0:
        axis += node.rank(0)
    node.op("Flatten", node.inputs[:1], node.outputs[:1], axis=axis)


@converter("Transpose")
def _transpose(node):
    perm = node.attr("perm")
    if perm is None:
        perm = list(range(node.rank(0)))[::-1]
    node.op("Transpose", node.inputs[:1], node.outputs[:1], axes=[int(p) for p in perm])


@converter("Concat")
def _concat(node):
    axis = int(node.attr("axis", 1))
    if axis < 0:
        axis += node.rank(node.inputs[0])
    inputs = [n for n in node.inputs if n]
    node.op("Concat", inputs, [node.outputs[0], node.tmp("split_info")], axis=axis)


@converter("Split")
def _split(node):
    rank = node.rank(0)
    axis = _norm_axes(node, [node.attr("axis", 0)], rank)[0]
    if node.opset < 13:
        split = node.attr("split")
    else:
        split = node.value(1, "split") if node.has_input(1) else None
    outputs = list(node.outputs)
    if split is None:
        n = int(node.attr("num_outputs", len(outputs)))
        dim = node.static_shape(0)[axis] if node.opset >= 18 else None
        if dim is not None and dim % n:
            chunk = -(-dim // n)
            split = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    args = {"axis": axis}
    if split is not None:
        args["split"] = _ints(split)
    outs = [o if o else node.tmp(f"unused{j}") for j, o in enumerate(outputs)]
    node.op("Split", node.inputs[:1], outs, **args)


@converter("Squeeze")
def _squeeze(node):
    axes = _axes_input_or_attr(node, 13)
    if axes is None:
        shape = node.static_shape(0)
        axes = [d for d, n in enumerate(shape) if n == 1]
    else:
        axes = _norm_axes(node, axes, node.rank(0))
    if not axes:
        node.op("Copy", node.inputs[:1], node.outputs[:1])
        return
    node.op("Squeeze", node.inputs[:1], node.outputs[:1], dims=sorted(set(axes)))


@converter("Unsqueeze")
def _unsqueeze(node):
    axes = _axes_input_or_attr(node, 13)
    if axes is None:
        raise node.error("axes are required")
    axes = _norm_axes(node, axes, node.rank(0) + len(axes))
    node.op("ExpandDims", node.inputs[:1], node.outputs[:1], dims=sorted(set(axes)))


@converter("Cast")
def _cast(node):
    dtype = np_dtype(int(node.attr("to")))
    node.op("Cast", node.inputs[:1], node.outputs[:1], to=caffe2_data_type(dtype, node.where()))


@converter("CastLike")
def _cast_like(node):
    dtype = node.dtype(1)
    if dtype is None:
        raise node.error("the type of target_type is unknown")
    node.op("Cast", node.inputs[:1], node.outputs[:1], to=caffe2_data_type(dtype, node.where()))


@converter("Constant")
def _constant(node):
    a = node.attrs
    if "value" in a:
        value = a["value"]
    elif "value_float" in a:
        value = np.array(a["value_float"], np.float32)
    elif "value_floats" in a:
        value = np.array(a["value_floats"], np.float32)
    elif "value_int" in a:
        value = np.array(a["value_int"], np.int64)
    elif "value_ints" in a:
        value = np.array(a["value_ints"], np.int64)
    else:
        raise node.error(f"value attribute {sorted(a)} is not supported (strings and sparse tensors are not)")
    node.set_constant(0, np.asarray(value))


@converter("ConstantOfShape")
def _constant_of_shape(node):
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    dtype = caffe2_data_type(value.dtype, node.where())
    fill = value[0].item()
    if node.is_constant(0):
        shape = _ints(node.value(0))
        if not shape:
            node.set_constant(0, np.array(fill, value.dtype))
            return
        node.op("ConstantFill", [], node.outputs[:1], shape=shape, value=fill, dtype=dtype)
        return
    node.op("ConstantFill", node.inputs[:1], node.outputs[:1], input_as_shape=1, value=fill, dtype=dtype)


@converter("Shape")
def _shape(node):
    shape = node.shape(0)
    rank = None if shape is None else len(shape)
    start, end = int(node.attr("start", 0)), node.attr("end")
    if rank is not None:
        start = min(max(start + rank if start < 0 else start, 0), rank)
        end = rank if end is None else int(end)
        end = min(max(end + rank if end < 0 else end, 0), rank)
        if None not in shape:
            node.set_constant(0, np.array(shape[start:end], np.int64))
            return
        node.op("Shape", node.inputs[:1], node.outputs[:1], axes=list(range(start, end)))
        return
    if start != 0 or end is not None:
        node.rank(0)  # raises: needs the rank
    node.op("Shape", node.inputs[:1], node.outputs[:1])


@converter("Size")
def _size(node):
    shape = node.shape(0)
    if shape is not None and None not in shape:
        node.set_constant(0, np.array(int(np.prod(shape, dtype=np.int64)), np.int64))
        return
    node.op("Size", node.inputs[:1], node.outputs[:1])


@converter("Range")
def _range(node):
    node.op("Range", node.inputs[:3], node.outputs[:1])


@converter("Gather")
def _gather(node):
    axis = int(node.attr("axis", 0))
    if axis < 0:
        axis += node.rank(0)
    node.op("Gather", node.inputs[:2], node.outputs[:1], axis=axis, wrap_indices=1)


@converter("Slice")
def _slice(node):
    rank = node.rank(0)
    if node.opset < 10:
        starts, ends = _ints(node.attr("starts")), _ints(node.attr("ends"))
        axes = node.attr("axes")
        steps = None
    else:
        starts, ends = _ints(node.value(1, "starts")), _ints(node.value(2, "ends"))
        axes = node.value(3, "axes") if node.has_input(3) else None
        steps = _ints(node.value(4, "steps")) if node.has_input(4) else None
    axes = list(range(len(starts))) if axes is None else _norm_axes(node, _ints(axes), rank)
    steps = [1] * len(starts) if steps is None else steps
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise node.error(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    node.op("StridedSlice", node.inputs[:1], node.outputs[:1], starts=starts, ends=ends, axes=axes, steps=steps)


@converter("Pad")
def _pad(node):
    rank = node.rank(0)
    if node.opset < 11:
        pads = _ints(node.attr("pads", node.attr("paddings")))
        value = float(node.attr("value", 0.0))
    else:
        pads = _ints(node.value(1, "pads"))
        cv = node.optional_value(2, "constant_value")
        value = 0.0 if cv is None or np.asarray(cv).size == 0 else float(np.asarray(cv).reshape(-1)[0])
    mode = node.attr("mode", "constant")
    axes = list(range(rank))
    if node.opset >= 18 and node.has_input(3):
        axes = _norm_axes(node, _ints(node.value(3, "axes")), rank)
    if len(pads) != 2 * len(axes):
        raise node.error(f"pads {pads} must have 2 entries per padded axis ({len(axes)})")
    full = [0] * (2 * rank)
    for k, a in enumerate(axes):
        full[a], full[a + rank] = pads[k], pads[k + len(axes)]
    node.op("Pad", node.inputs[:1], node.outputs[:1], pads=full, mode=mode, value=value)


@converter("Expand")
def _expand(node):
    node.op("Expand", node.inputs[:2], node.outputs[:1])


@converter("Tile")
def _tile(node):
    if node.opset < 6:
        raise node.error("Tile before opset 6 (tiles/axis inputs) is not supported")
    repeats = _ints(node.value(1, "repeats"))
    current = node.inputs[0]
    work = [(a, r) for a, r in enumerate(repeats) if r != 1]
    if not work:
        node.op("Copy", [current], node.outputs[:1])
        return
    for k, (axis, r) in enumerate(work):
        dest = node.outputs[0] if k == len(work) - 1 else node.tmp(f"tile{axis}")
        current = node.op("Tile", [current], [dest], tiles=r, axis=axis)


@converter("Trilu")
def _trilu(node):
    k = int(np.asarray(node.value(1, "k")).reshape(())) if node.has_input(1) else 0
    node.op("Trilu", node.inputs[:1], node.outputs[:1], upper=int(node.attr("upper", 1)), k=k)


@converter("CumSum")
def _cumsum(node):
    axis = int(np.asarray(node.value(1, "axis")).reshape(()))
    node.op("CumSum", node.inputs[:1], node.outputs[:1], axis=axis, exclusive=int(node.attr("exclusive", 0)),
            reverse=int(node.attr("reverse", 0)))


@converter("TopK")
def _topk(node):
    k = int(np.asarray(node.attr("k") if node.opset < 10 else node.value(1, "K")).reshape(-1)[0])
    outputs = [o if o else node.tmp(f"unused{j}") for j, o in enumerate(node.outputs[:2])]
    # sorted=0 allows any order; nbcaffe always returns the sorted order
    node.op("TopK", node.inputs[:1], outputs, k=k, axis=int(node.attr("axis", -1)),
            largest=int(node.attr("largest", 1)))


@converter("GatherElements")
def _gather_elements(node):
    node.op("GatherElements", node.inputs[:2], node.outputs[:1], axis=int(node.attr("axis", 0)))


def _positions(node, n, axis, rank, tag):
    """int64 [0, n) shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = n
    return node.const(np.arange(n, dtype=np.int64).reshape(shape), tag)


@converter("OneHot")
def _one_hot(node):
    """output = values[1] where index == position along the new axis, else values[0]; negative
    indices count from depth (out-of-range ones give all off values)."""
    depth = int(np.asarray(node.value(1, "depth")).reshape(-1)[0])
    rank = node.rank(0) + 1
    axis = int(node.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    idx = node.inputs[0]
    if node.dtype(0) != np.dtype(np.int64):
        idx = node.op("Cast", [idx], [node.tmp("idx64")], to=caffe2_data_type(np.int64))
    wrapped = node.op("Add", [idx, node.const(np.array(depth, np.int64), "depth")], [node.tmp("wrapped")])
    negative = node.op("LT", [idx, node.const(np.array(0, np.int64), "zero")], [node.tmp("negative")])
    idx = node.op("Where", [negative, wrapped, idx], [node.tmp("index")])
    idx = node.op("ExpandDims", [idx], [node.tmp("index_axis")], dims=[axis])
    hot = node.op("EQ", [idx, _positions(node, depth, axis, rank, "positions")], [node.tmp("hot")])
    values = node.inputs[2]
    off = node.op("StridedSlice", [values], [node.tmp("off")], starts=[0], ends=[1])
    on = node.op("StridedSlice", [values], [node.tmp("on")], starts=[1], ends=[2])
    node.op("Where", [hot, on, off], node.outputs[:1])


@converter("Hardmax")
def _hardmax(node):
    """1 at the first maximum along ``axis`` (opset 13) or over the dims from ``axis`` on (the
    2-D coercion before 13), 0 elsewhere."""
    shape = node.static_shape(0)
    rank = len(shape)
    dtype = node.dtype(0) or np.dtype(np.float32)
    x = node.inputs[0]
    if node.opset < 13:
        axis = int(node.attr("axis", 1))
        axis = axis + rank if axis < 0 else axis
        x = node.op("Flatten", [x], [node.tmp("flat")], axis=axis)
        work_axis, work_rank, n = 1, 2, int(np.prod(shape[axis:], dtype=np.int64))
    else:
        axis = int(node.attr("axis", -1))
        work_axis = axis + rank if axis < 0 else axis
        work_rank, n = rank, shape[work_axis]
    first = node.op("ArgMax", [x], [node.tmp("argmax")], axis=work_axis, keepdims=1)
    hot = node.op("EQ", [first, _positions(node, n, work_axis, work_rank, "positions")], [node.tmp("hot")])
    out = node.outputs[0] if node.opset >= 13 else node.tmp("hot2d")
    node.op("Cast", [hot], [out], to=caffe2_data_type(dtype, node.where()))
    if node.opset < 13:
        node.op("Reshape", [out], [node.outputs[0], node.tmp("old")], shape=list(shape))
