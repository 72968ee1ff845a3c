"""ONNX -> Caffe2 converters: convolution, pooling, normalization, Gemm/MatMul, Dropout.

Padding: ONNX ``pads`` = all heads then all tails, Caffe2's ``pads`` order.  ``auto_pad``
SAME_UPPER/SAME_LOWER and pooling ``ceil_mode`` become explicit pads computed from the static
input shape (ONNX shape inference); VALID is pads of 0.
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe.onnx.converter import converter
from nbcaffe.onnx.helper import caffe2_data_type


def _spatial(node, what_rank_from=0):
    return node.rank(what_rank_from) - 2


def _kernel_shape(node):
    kernel = node.attr("kernel_shape")
    if kernel is None:
        w_shape = node.static_shape(1)
        kernel = list(w_shape[2:])
    return [int(k) for k in kernel]


def _geometry(node, kernel, pooling=False):
    """(strides, pads, dilations) with auto_pad / ceil_mode resolved into explicit pads."""
    n = len(kernel)
    strides = [int(s) for s in node.attr("strides", [1] * n)]
    dilations = [int(d) for d in node.attr("dilations", [1] * n)]
    pads = [int(p) for p in node.attr("pads", [0] * (2 * n))]
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        spatial = node.static_shape(0)[2:]
        pads = [0] * (2 * n)
        for d in range(n):
            out = -(-spatial[d] // strides[d])
            dk = dilations[d] * (kernel[d] - 1) + 1
            total = max(0, (out - 1) * strides[d] + dk - spatial[d])
            small, large = total // 2, total - total // 2
            pads[d], pads[d + n] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * n)
    elif auto_pad != "NOTSET":
        raise node.error(f"auto_pad '{auto_pad}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if pooling and node.attr("ceil_mode", 0):
        spatial = node.static_shape(0)[2:]
        for d in range(n):
            dk = dilations[d] * (kernel[d] - 1) + 1
            padded = spatial[d] + pads[d] + pads[d + n]
            out = math.ceil((padded - dk) / strides[d]) + 1
            if (out - 1) * strides[d] >= spatial[d] + pads[d]:
                out -= 1  # a last window starting in the tail padding is dropped (ONNX, PyTorch)
            extra = (out - 1) * strides[d] + dk - padded
            if extra > 0:
                pads[d + n] += extra
    return strides, pads, dilations


@converter("Conv")
def _conv(node):
    kernel = _kernel_shape(node)
    strides, pads, dilations = _geometry(node, kernel)
    inputs = [n for n in node.inputs[:3] if n]
    node.op("Conv", inputs, node.outputs[:1], kernels=kernel, strides=strides, pads=pads, dilations=dilations,
            group=int(node.attr("group", 1)))


@converter("ConvTranspose")
def _conv_transpose(node):
    kernel = _kernel_shape(node)
    n = len(kernel)
    dilations = [int(d) for d in node.attr("dilations", [1] * n)]
    w = node.inputs[1]
    if any(d != 1 for d in dilations):
        # nbcaffe's ConvTranspose has no dilation (as Caffe2): dilate the filter instead, zeros
        # between its taps, and use the dilated kernel size
        w = _dilated_filter(node, w, kernel, dilations)
        kernel = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    strides = [int(s) for s in node.attr("strides", [1] * n)]
    adjs = [int(a) for a in node.attr("output_padding", [0] * n)]
    pads = [int(p) for p in node.attr("pads", [0] * (2 * n))]
    auto_pad = node.attr("auto_pad", "NOTSET")
    output_shape = node.attr("output_shape")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        spatial = node.static_shape(0)[2:]
        if output_shape is not None:
            target = [int(v) for v in output_shape][-n:]
        else:
            target = [spatial[d] * strides[d] for d in range(n)]
        for d in range(n):
            total = strides[d] * (spatial[d] - 1) + adjs[d] + kernel[d] - target[d]
            if total < 0:  # the output is larger than the kernels reach: grow it with adj
                adjs[d] -= total
                total = 0
            small, large = total // 2, total - total // 2
            # ONNX: SAME_UPPER puts the smaller half first; otherwise the larger half
            pads[d], pads[d + n] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * n)
    inputs = [node.inputs[0], w] + ([node.inputs[2]] if node.has_input(2) else [])
    node.op("ConvTranspose", inputs, node.outputs[:1], kernels=kernel, strides=strides, pads=pads,
            adjs=adjs, group=int(node.attr("group", 1)))


def _dilated_filter(node, w, kernel, dilations):
    """W (C, M, k1, ..., kn) -> (C, M, d1 (k1 - 1) + 1, ...) with d - 1 zeros between taps:
    reshape to (C, M, k1, 1, k2, 1, ...), zero-pad each 1 to d, flatten pairs, crop the tail."""
    c, m = node.static_shape(1)[:2]
    n = len(kernel)
    split = [c, m] + [v for k in kernel for v in (k, 1)]
    pads = [0] * len(split) * 2
    for a, d in enumerate(dilations):
        pads[len(split) + 3 + 2 * a] = d - 1
    r = node.op("Reshape", [w], [node.tmp("wsplit"), node.tmp("old")], shape=split)
    p = node.op("Pad", [r], [node.tmp("wpad")], pads=pads)
    merged = [c, m] + [k * d for k, d in zip(kernel, dilations)]
    f = node.op("Reshape", [p], [node.tmp("wflat"), node.tmp("old2")], shape=merged)
    size = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    return node.op("StridedSlice", [f], [node.tmp("wdil")], starts=[0] * n, ends=size,
                   axes=list(range(2, 2 + n)))


def _pool(node, caffe2_type):
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides, pads, dilations = _geometry(node, kernel, pooling=True)
    args = dict(kernels=kernel, strides=strides, pads=pads)
    if any(d != 1 for d in dilations):
        args["dilations"] = dilations
    x, y = node.inputs[0], node.outputs[0]
    if caffe2_type == "AveragePool" and node.attr("count_include_pad", 0) and any(node.attr("pads", [])):
        # ONNX divides by the window's cells inside input + explicit pads (not by the kernel
        # volume): zero-pad explicitly, then average over cells that exist (ceil-mode extension
        # excluded)
        n = len(kernel)
        explicit = [int(p) for p in node.attr("pads")]
        full = [0, 0] + explicit[:n] + [0, 0] + explicit[n:]
        x = node.op("Pad", [x], [node.tmp("padded")], pads=full)
        args["pads"] = [p - e for p, e in zip(pads, explicit)]
    dtype = node.dtype(0)
    if caffe2_type == "MaxPool" and dtype is not None and dtype.kind in "iu":
        # nbcaffe pools floats; every integer up to 2**53 is exact in float64
        x = node.op("Cast", [x], [node.tmp("as_double")], to=caffe2_data_type(np.float64))
        pooled = node.op("MaxPool", [x], [node.tmp("pooled")], **args)
        node.op("Cast", [pooled], [y], to=caffe2_data_type(dtype, node.where()))
        return
    if node.has_output(1):
        _max_pool_with_indices(node, x, args)
        return
    node.op(caffe2_type, [x], [y], **args)


def _max_pool_with_indices(node, x, args):
    """ONNX Indices = flat index into the whole (N, C, *spatial) input (storage_order 0)."""
    shape = node.static_shape(0)
    column_major = bool(node.attr("storage_order", 0))
    if column_major and len(shape) != 4:
        raise node.error("Indices with storage_order=1 (column-major) are supported for 2-D pooling only")
    out_shape = node.static_shape(node.outputs[0])
    n, c = shape[:2]
    plane = int(np.prod(shape[2:]))
    mask = node.tmp("mask")
    node.op("MaxPoolWithIndex", [x], [node.outputs[0], mask], **args)
    wide = node.op("Cast", [mask], [node.tmp("mask64")], to=caffe2_data_type(np.int64))
    local = node.op("Reshape", [wide], [node.tmp("local"), node.tmp("old")], shape=list(out_shape))
    if column_major:  # h * W + w -> w * H + h
        height, width = shape[2:]
        row = node.op("Div", [local, node.const(np.array(width, np.int64), "W")], [node.tmp("row")])
        row_start = node.op("Mul", [row, node.const(np.array(width, np.int64), "W2")], [node.tmp("rowstart")])
        col = node.op("Sub", [local, row_start], [node.tmp("col")])
        col_h = node.op("Mul", [col, node.const(np.array(height, np.int64), "H")], [node.tmp("colh")])
        local = node.op("Add", [col_h, row], [node.tmp("local_cm")])
    offsets = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * (len(shape) - 2))
    node.op("Add", [local, node.const(offsets, "plane_offset")], node.outputs[1:2])


@converter("MaxPool")
def _max_pool(node):
    _pool(node, "MaxPool")


@converter("AveragePool")
def _average_pool(node):
    _pool(node, "AveragePool")


@converter("GlobalAveragePool")
def _global_average_pool(node):
    node.op("AveragePool", node.inputs[:1], node.outputs[:1], global_pooling=1)


@converter("GlobalMaxPool")
def _global_max_pool(node):
    node.op("MaxPool", node.inputs[:1], node.outputs[:1], global_pooling=1)


@converter("BatchNormalization")
def _batch_norm(node):
    epsilon = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    if node.opset < 9 and not node.attr("spatial", 1):
        raise node.error("spatial=0 (per-activation statistics) is not supported")
    if node.opset >= 14:
        training = bool(node.attr("training_mode", 0))
    elif node.opset < 7:
        training = not node.attr("is_test", 0)
    else:
        training = any(node.has_output(j) for j in range(1, 5))
    x, scale, bias, mean, var = node.inputs[:5]
    if not training:
        node.op("SpatialBN", [x, scale, bias, mean, var], node.outputs[:1], is_test=1, epsilon=epsilon)
        return
    # Caffe2 updates the running statistics in place: copy them into the ONNX output blobs first
    running_mean = node.outputs[1] if node.has_output(1) else node.tmp("running_mean")
    running_var = node.outputs[2] if node.has_output(2) else node.tmp("running_var")
    node.op("Copy", [mean], [running_mean])
    node.op("Copy", [var], [running_var])
    saved_mean = node.outputs[3] if node.has_output(3) else node.tmp("saved_mean")
    saved_inv = node.tmp("saved_inv_var")
    node.op("SpatialBN", [x, scale, bias, running_mean, running_var],
            [node.outputs[0], running_mean, running_var, saved_mean, saved_inv], is_test=0, epsilon=epsilon,
            momentum=momentum)
    if node.has_output(4):  # opset < 14 saved_var: the batch variance = saved_inv^-2 - epsilon
        var_eps = node.op("Pow", [saved_inv], [node.tmp("var_eps")], exponent=-2.0)
        eps = node.const(np.array(-epsilon, node.dtype(0) or np.float32), "eps")
        node.op("Add", [var_eps, eps], node.outputs[4:5])


@converter("InstanceNormalization")
def _instance_norm(node):
    node.op("InstanceNorm", node.inputs[:3], node.outputs[:1], epsilon=float(node.attr("epsilon", 1e-5)))


@converter("LRN")
def _lrn(node):
    node.op("LRN", node.inputs[:1], node.outputs[:1], size=int(node.attr("size")),
            alpha=float(node.attr("alpha", 1e-4)), beta=float(node.attr("beta", 0.75)),
            bias=float(node.attr("bias", 1.0)))


@converter("LayerNormalization", since=17)
def _layer_norm(node):
    rank = node.rank(0)
    axis = int(node.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    epsilon = float(node.attr("epsilon", 1e-5))
    x = node.inputs[0]
    normed = node.tmp("normed")
    mean, std = node.tmp("mean"), node.tmp("std")
    node.op("LayerNorm", [x], [normed, mean, std], axis=axis, epsilon=epsilon)
    scaled = node.op("Mul", [normed, node.inputs[1]], [node.tmp("scaled") if node.has_input(2) else node.outputs[0]])
    if node.has_input(2):
        node.op("Add", [scaled, node.inputs[2]], node.outputs[:1])
    stat_shape = [0] * axis + [1] * (rank - axis)  # Caffe2's Reshape: 0 keeps that dim
    if node.has_output(1):
        node.op("Reshape", [mean], [node.outputs[1]], shape=stat_shape)
    if node.has_output(2):
        inv = node.op("Pow", [std], [node.tmp("inv")], exponent=-1.0)
        node.op("Reshape", [inv], [node.outputs[2]], shape=stat_shape)


@converter("Gemm")
def _gemm(node):
    a, b = node.inputs[:2]
    c = node.inputs[2] if node.has_input(2) else None
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    c_shape = node.shape(2) if c else None
    fc_bias = c is not None and beta == 1.0 and c_shape is not None and len(c_shape) == 1 and c_shape[0] is not None \
        and node.shape(1) is not None and c_shape[0] == node.shape(1)[0 if trans_b else 1]
    if not trans_a and alpha == 1.0 and fc_bias and node.rank(0) == 2:
        w = b
        if not trans_b:  # FC wants W as (N, K)
            w = node.op("Transpose", [b], [node.tmp("wt")], axes=[1, 0])
        node.op("FC", [a, w, c], node.outputs[:1])
        return
    y = node.outputs[0]
    prod = node.op("BatchMatMul", [a, b], [node.tmp("ab") if (c or alpha != 1.0) else y], trans_a=trans_a,
                   trans_b=trans_b)
    if alpha != 1.0:
        prod = node.op("Scale", [prod], [node.tmp("alpha_ab") if c else y], scale=alpha)
    if c:
        if beta != 1.0:
            c = node.op("Scale", [c], [node.tmp("beta_c")], scale=beta)
        node.op("Add", [prod, c], [y])


@converter("MatMul")
def _matmul(node):
    a_shape, b_shape = node.shape(0), node.shape(1)
    if a_shape is not None and b_shape is not None and len(a_shape) == 1 and len(b_shape) == 1:
        # vector . vector: Caffe2 gives a 1-element vector, ONNX a scalar
        y = node.op("BatchMatMul", node.inputs[:2], [node.tmp("dot")], broadcast=1)
        node.op("Squeeze", [y], node.outputs[:1], dims=[0])
        return
    node.op("BatchMatMul", node.inputs[:2], node.outputs[:1], broadcast=1)


@converter("Dropout")
def _dropout(node):
    training = False
    ratio = float(node.attr("ratio", 0.5))
    if node.opset >= 12:
        if node.has_input(1):
            ratio = float(np.asarray(node.value(1, "ratio")).reshape(()))
        if node.has_input(2):
            training = bool(np.asarray(node.value(2, "training_mode")).reshape(()))
    elif node.opset < 7:
        training = not node.attr("is_test", 0)
    outputs = [node.outputs[0]]
    mask = node.outputs[1] if node.has_output(1) else None
    mask_dtype = node.dtype(node.outputs[1]) if mask else None
    if mask:
        outputs.append(mask if mask_dtype in (None, np.dtype(bool)) else node.tmp("mask"))
    if training:
        if len(outputs) == 1:  # Caffe2's training Dropout always writes its mask
            outputs.append(node.tmp("mask"))
        node.op("Dropout", node.inputs[:1], outputs, ratio=ratio, is_test=0)
    else:
        node.op("Dropout", node.inputs[:1], outputs, is_test=1)
    if mask and outputs[1] != mask:  # opset < 10: the mask has the input's type
        node.op("Cast", [outputs[1]], [mask], to=caffe2_data_type(mask_dtype, node.where()))


@converter("MeanVarianceNormalization")
def _mvn(node):
    axes = [int(a) for a in node.attr("axes", [0, 2, 3])]
    x = node.inputs[0]
    mean = node.op("ReduceMean", [x], [node.tmp("mean")], axes=axes, keepdims=1)
    centred = node.op("Sub", [x, mean], [node.tmp("centred")])
    sq = node.op("Sqr", [centred], [node.tmp("sq")])
    var = node.op("ReduceMean", [sq], [node.tmp("var")], axes=axes, keepdims=1)
    std = node.op("Sqrt", [var], [node.tmp("std")])
    eps = node.const(np.array(1e-9, node.dtype(0) or np.float32), "eps")
    std_eps = node.op("Add", [std, eps], [node.tmp("std_eps")])
    node.op("Div", [centred, std_eps], node.outputs[:1])


def _eps(node, value):
    return node.const(np.array(value, node.dtype(0) or np.float32), "eps")


@converter("RMSNormalization", since=23)
def _rms_norm(node):
    rank = node.rank(0)
    axis = int(node.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    x = node.inputs[0]
    sq = node.op("Sqr", [x], [node.tmp("sq")])
    ms = node.op("ReduceMean", [sq], [node.tmp("ms")], axes=list(range(axis, rank)), keepdims=1)
    rms = node.op("Sqrt", [node.op("Add", [ms, _eps(node, float(node.attr("epsilon", 1e-5)))], [node.tmp("mse")])],
                  [node.tmp("rms")])
    normed = node.op("Div", [x, rms], [node.tmp("normed")])
    node.op("Mul", [normed, node.inputs[1]], node.outputs[:1])


@converter("GroupNormalization", since=18)
def _group_norm(node):
    """Statistics per (sample, group) over a (N, G, -1) view; scale/bias per group (opset 18)
    or per channel (opset 21)."""
    shape = node.static_shape(0)
    groups = int(node.attr("num_groups"))
    x, scale, bias = node.inputs[:3]
    grouped = node.op("Reshape", [x], [node.tmp("grouped"), node.tmp("old")], shape=[shape[0], groups, -1])
    mean = node.op("ReduceMean", [grouped], [node.tmp("mean")], axes=[2], keepdims=1)
    centred = node.op("Sub", [grouped, mean], [node.tmp("centred")])
    var = node.op("ReduceMean", [node.op("Sqr", [centred], [node.tmp("sq")])], [node.tmp("var")], axes=[2],
                  keepdims=1)
    std = node.op("Sqrt", [node.op("Add", [var, _eps(node, float(node.attr("epsilon", 1e-5)))],
                                   [node.tmp("var_eps")])], [node.tmp("std")])
    normed = node.op("Div", [centred, std], [node.tmp("normed")])
    if node.opset < 21:  # per-group scale and bias, applied in the grouped view
        g_scale = node.op("Reshape", [scale], [node.tmp("gscale"), node.tmp("old_s")], shape=[groups, 1])
        g_bias = node.op("Reshape", [bias], [node.tmp("gbias"), node.tmp("old_b")], shape=[groups, 1])
        affine = node.op("Add", [node.op("Mul", [normed, g_scale], [node.tmp("scaled")]), g_bias],
                         [node.tmp("affine")])
        node.op("Reshape", [affine], [node.outputs[0], node.tmp("old_y")], shape=list(shape))
        return
    restored = node.op("Reshape", [normed], [node.tmp("restored"), node.tmp("old_y")], shape=list(shape))
    channel_shape = [shape[1]] + [1] * (len(shape) - 2)
    c_scale = node.op("Reshape", [scale], [node.tmp("cscale"), node.tmp("old_s")], shape=channel_shape)
    c_bias = node.op("Reshape", [bias], [node.tmp("cbias"), node.tmp("old_b")], shape=channel_shape)
    node.op("Add", [node.op("Mul", [restored, c_scale], [node.tmp("scaled")]), c_bias], node.outputs[:1])


@converter("LpNormalization")
def _lp_norm(node):
    p = int(node.attr("p", 2))
    axis = int(node.attr("axis", -1))
    x = node.inputs[0]
    if p == 1:
        norm = node.op("ReduceSum", [node.op("Abs", [x], [node.tmp("abs")])], [node.tmp("norm")], axes=[axis],
                       keepdims=1)
    elif p == 2:
        total = node.op("ReduceSum", [node.op("Sqr", [x], [node.tmp("sq")])], [node.tmp("sum")], axes=[axis],
                        keepdims=1)
        norm = node.op("Sqrt", [total], [node.tmp("norm")])
    else:
        raise node.error(f"p={p} (ONNX allows 1 or 2)")
    # a zero norm (an all-zero slice) divides by 1 instead: the slice stays 0, as in ONNX
    dtype = node.dtype(0) or np.dtype(np.float32)
    is_zero = node.op("EQ", [norm, node.const(np.array(0, dtype), "zero")], [node.tmp("is_zero")])
    bump = node.op("Cast", [is_zero], [node.tmp("bump")], to=caffe2_data_type(dtype, node.where()))
    safe = node.op("Add", [norm, bump], [node.tmp("safe_norm")])
    node.op("Div", [x, safe], node.outputs[:1])


@converter("LpPool")
def _lp_pool(node):
    """(Σ |x|^p over the window)^(1/p) = (kernel volume x mean of |x|^p with padding counted)^(1/p)."""
    p = float(node.attr("p", 2))
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides, pads, dilations = _geometry(node, kernel, pooling=True)
    dtype = node.dtype(0) or np.float32
    powered = node.op("Pow", [node.op("Abs", node.inputs[:1], [node.tmp("abs")])], [node.tmp("pow")], exponent=p)
    args = dict(kernels=kernel, strides=strides, pads=pads, count_include_pad=1)
    if any(d != 1 for d in dilations):
        args["dilations"] = dilations
    mean = node.op("AveragePool", [powered], [node.tmp("mean")], **args)
    total = node.op("Mul", [mean, node.const(np.array(float(np.prod(kernel)), dtype), "volume")],
                    [node.tmp("sum")])
    node.op("Pow", [total], node.outputs[:1], exponent=1.0 / p)


@converter("GlobalLpPool")
def _global_lp_pool(node):
    p = float(node.attr("p", 2))
    rank = node.rank(0)
    powered = node.op("Pow", [node.op("Abs", node.inputs[:1], [node.tmp("abs")])], [node.tmp("pow")], exponent=p)
    total = node.op("ReduceSum", [powered], [node.tmp("sum")], axes=list(range(2, rank)), keepdims=1)
    node.op("Pow", [total], node.outputs[:1], exponent=1.0 / p)
