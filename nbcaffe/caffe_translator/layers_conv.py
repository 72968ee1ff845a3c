"""Translators of the windowed and dense layers: Convolution, Deconvolution, Pooling,
InnerProduct, ROIPooling.

Pooling reproduces Caffe exactly, which Caffe2's translator did not for padded average
pooling: Caffe divides by the window clipped to the *padded* input (``count_include_pad``
up to the padded border), while ``legacy_pad=3`` pooling in Caffe2 / nbcaffe clips to the
image.  The translation picks the cheapest exact form (see :func:`translate_pooling`), and
checks Caffe's ceil-mode output size against Caffe2's ``CAFFE_LEGACY_POOLING`` rule for the
known input shape, falling back to explicit pads where the two disagree.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.caffe_translator._core import TranslatorRegistry, make_op
from nbcaffe.proto import caffe_pb2

CAFFE_LEGACY_POOLING = 3
register = TranslatorRegistry.Register


def need_blobs(ctx, blobs, count, what):
    if len(blobs) < count:
        raise ctx.error(f"needs {count} stored blob(s) ({what}) but the caffemodel has {len(blobs)} for this layer"
                        f" (is the layer name the same in the prototxt and the caffemodel?)")


def _values(ctx, p, repeated, h_name, w_name, default, rank, what):
    """Per-spatial-dim values of a Convolution field: repeated (1 or rank values) or _h/_w."""
    if p.HasField(h_name) or p.HasField(w_name):
        if rank != 2:
            raise ctx.error(f"{h_name}/{w_name} describe 2-D windows but the input has {rank} spatial dims")
        if len(repeated):
            raise ctx.error(f"give either {what} or {h_name}/{w_name}, not both")
        return int(getattr(p, h_name)), int(getattr(p, w_name))
    values = [int(v) for v in repeated]
    if not values:
        return (default,) * rank
    if len(values) == 1:
        return (values[0],) * rank
    if len(values) == rank:
        return tuple(values)
    raise ctx.error(f"{what} has {len(values)} values for {rank} spatial dims")


def conv_geometry(ctx, p, x):
    """(kernel, stride, pad, dilation) tuples of a ConvolutionParameter for input blob x."""
    if p.axis != 1:
        raise ctx.unsupported(f"convolution_param.axis={p.axis} (channels must be axis 1)")
    if ctx.has_shape(x):
        rank = ctx.rank(x) - 2
    else:
        rank = max(len(p.kernel_size), len(p.stride), len(p.pad), len(p.dilation), 2)
    if (p.HasField("kernel_h") or p.HasField("kernel_w")) and not (p.HasField("kernel_h") and p.HasField("kernel_w")):
        raise ctx.error("kernel_h and kernel_w must be given together")
    kernel = _values(ctx, p, p.kernel_size, "kernel_h", "kernel_w", 0, rank, "kernel_size")
    if min(kernel) < 1:
        raise ctx.error(f"kernel size {list(kernel)} must be positive (set kernel_size or kernel_h/kernel_w)")
    stride = _values(ctx, p, p.stride, "stride_h", "stride_w", 1, rank, "stride")
    pad = _values(ctx, p, p.pad, "pad_h", "pad_w", 0, rank, "pad")
    dilation = tuple(int(d) for d in p.dilation)
    if len(dilation) in (0, 1):
        dilation = (dilation[0] if dilation else 1,) * rank
    elif len(dilation) != rank:
        raise ctx.error(f"dilation has {len(dilation)} values for {rank} spatial dims")
    return kernel, stride, pad, dilation


def window_args(kernel, stride, heads, tails, dilation=None):
    """Caffe2 window arguments: scalars / _h _w pairs in 2-D, lists otherwise."""
    rank = len(kernel)
    args = {}
    if rank != 2:
        args.update(kernels=list(kernel), strides=list(stride), pads=list(heads) + list(tails))
        if dilation is not None and any(d != 1 for d in dilation):
            args["dilations"] = list(dilation)
        return args
    for name, pair in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if pair is None or (name == "dilation" and pair == (1, 1)):
            continue
        if pair[0] == pair[1]:
            args[name] = pair[0]
        else:
            args[name + "_h"], args[name + "_w"] = pair
    pads = (heads[0], heads[1], tails[0], tails[1])
    if len(set(pads)) == 1:
        args["pad"] = pads[0]
    else:
        args.update(pad_t=pads[0], pad_l=pads[1], pad_b=pads[2], pad_r=pads[3])
    return args


@register("Convolution")
def translate_convolution(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.convolution_param
    x, y = layer.bottom[0], layer.top[0]
    kernel, stride, pad, dilation = conv_geometry(ctx, p, x)
    need_blobs(ctx, pretrained_blobs, 2 if p.bias_term else 1, "weights" + (" and bias" if p.bias_term else ""))
    w = pretrained_blobs[0]
    group = int(p.group)
    expected = (int(p.num_output), None) + tuple(kernel)
    if w.ndim != 2 + len(kernel) or w.shape[0] != p.num_output or tuple(w.shape[2:]) != tuple(kernel):
        raise ctx.error(f"stored weights {w.shape} do not fit num_output {p.num_output} and kernel {list(kernel)}"
                        f" (expected {expected[:1] + ('C/group',) + expected[2:]})")
    if ctx.has_shape(x) and w.shape[1] * group != ctx.shape(x)[1]:
        raise ctx.error(f"stored weights {w.shape} with group {group} need {w.shape[1] * group} input channels,"
                        f" but '{x}' has shape {ctx.shape(x)}")
    params = [ctx.tensor(f"{y}_w", w)]
    if p.bias_term:
        params.append(ctx.tensor(f"{y}_b", pretrained_blobs[1].reshape(-1)))
    args = window_args(kernel, stride, pad, pad, dilation)
    if group != 1:
        args["group"] = group
    return [make_op("Conv", [x] + [t.name for t in params], [y], **args)], params


@register("Deconvolution")
def translate_deconvolution(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.convolution_param
    x, y = layer.bottom[0], layer.top[0]
    kernel, stride, pad, dilation = conv_geometry(ctx, p, x)
    if any(d != 1 for d in dilation):
        raise ctx.unsupported(f"dilation {list(dilation)} in a Deconvolution (ConvTranspose has none)")
    need_blobs(ctx, pretrained_blobs, 2 if p.bias_term else 1, "weights" + (" and bias" if p.bias_term else ""))
    w = pretrained_blobs[0]
    group = int(p.group)
    if w.ndim != 2 + len(kernel) or w.shape[1] * group != p.num_output or tuple(w.shape[2:]) != tuple(kernel):
        raise ctx.error(f"stored weights {w.shape} do not fit num_output {p.num_output}, group {group} and kernel"
                        f" {list(kernel)} (expected (C_in, num_output/group, *kernel))")
    params = [ctx.tensor(f"{y}_w", w)]
    if p.bias_term:
        params.append(ctx.tensor(f"{y}_b", pretrained_blobs[1].reshape(-1)))
    args = window_args(kernel, stride, pad, pad)
    if group != 1:
        args["group"] = group
    return [make_op("ConvTranspose", [x] + [t.name for t in params], [y], order="NCHW", **args)], params


# ------------------------------------------------------------------------------- pooling

def caffe_pool_size(size, k, s, p, any_pad, ceil):
    """Caffe's PoolingLayer::Reshape output size along one dim."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if any_pad and (out - 1) * s >= size + p:
        out -= 1  # Caffe drops a last window that would start in the padding
    return out


def legacy_pool_size(size, k, s, p):
    """Caffe2's CAFFE_LEGACY_POOLING output size (the rule nbcaffe's legacy_pad=3 follows)."""
    out = -(-(size + 2 * p - k) // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_window(ctx, p):
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        if not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise ctx.error("kernel_h and kernel_w must be given together")
        if p.HasField("kernel_size"):
            raise ctx.error("give either kernel_size or kernel_h/kernel_w, not both")
        kernel = (int(p.kernel_h), int(p.kernel_w))
    elif p.HasField("kernel_size"):
        kernel = (int(p.kernel_size),) * 2
    else:
        raise ctx.error("kernel_size (or kernel_h/kernel_w) is required unless global_pooling is set")
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (int(p.stride_h), int(p.stride_w))
    else:
        stride = (int(p.stride),) * 2
    if p.HasField("pad_h") or p.HasField("pad_w"):
        pad = (int(p.pad_h), int(p.pad_w))
    else:
        pad = (int(p.pad),) * 2
    if min(kernel) < 1 or min(stride) < 1:
        raise ctx.error(f"kernel {list(kernel)} and stride {list(stride)} must be positive")
    if any(q >= k for q, k in zip(pad, kernel)):
        raise ctx.error(f"pad {list(pad)} must be smaller than the kernel {list(kernel)} (Caffe checks this too)")
    return kernel, stride, pad


@register("Pooling")
def translate_pooling(layer, pretrained_blobs, is_test, ctx, **_):
    """MaxPool / AveragePool with Caffe's output size and divisor.

    * MAX, or AVE without padding: one op, ``legacy_pad=3`` (ceil mode), windows clipped to
      the image -- Caffe's divisor when there is no padding.
    * AVE with padding and stride 1 (or FLOOR rounding): windows never pass the padded
      border, so ``count_include_pad=1`` is Caffe's divisor.
    * AVE with padding otherwise: PadImage (zeros) then AveragePool without padding, so the
      window is clipped to the padded input exactly as Caffe clips it.
    With a known input shape the output size is checked against Caffe's; ``remove_legacy_pad``
    (or a mismatch) writes the ceil-mode extra cells as explicit bottom/right pads.
    """
    p = layer.pooling_param
    x, y = layer.bottom[0], layer.top[0]
    P = caffe_pb2.PoolingParameter
    if p.pool == P.STOCHASTIC:
        raise ctx.unsupported("STOCHASTIC pooling (a random pick when training, a probability-weighted average"
                              " when testing) has no nbcaffe op")
    op_type = "MaxPool" if p.pool == P.MAX else "AveragePool"
    if ctx.has_shape(x) and ctx.rank(x) != 4:
        raise ctx.error(f"Caffe pools 4-D (N, C, H, W) blobs; '{x}' has shape {ctx.shape(x)}")
    if p.global_pooling:
        if p.pad or p.pad_h or p.pad_w or p.stride != 1 or p.stride_h > 1 or p.stride_w > 1:
            raise ctx.error("global_pooling needs pad 0 and stride 1 (Caffe checks this too)")
        return [make_op(op_type, [x], [y], global_pooling=1, order="NCHW")], []
    kernel, stride, pad = _pool_window(ctx, p)
    ceil = p.round_mode == P.CEIL
    any_pad = any(pad)
    sizes = ctx.shape(x)[2:] if ctx.has_shape(x) else None
    want = None
    if sizes is not None:
        want = [caffe_pool_size(n, k, s, q, any_pad, ceil) for n, k, s, q in zip(sizes, kernel, stride, pad)]
        if min(want) < 1:
            raise ctx.error(f"input {ctx.shape(x)} is smaller than the pooling window {list(kernel)}")

    padded_input = op_type == "AveragePool" and any_pad and ceil and max(stride) > 1
    ops = []
    if padded_input:
        src = ctx.fresh(f"{y}_caffe_padded")
        ops.append(make_op("PadImage", [x], [src], pad_t=pad[0], pad_l=pad[1], pad_b=pad[0], pad_r=pad[1],
                           mode="constant", value=0.0, order="NCHW"))
        heads = (0, 0)
        in_sizes = [n + 2 * q for n, q in zip(sizes, pad)] if sizes is not None else None
    else:
        src, heads, in_sizes = x, pad, sizes
    args = {"order": "NCHW"}
    if op_type == "AveragePool" and any_pad and not padded_input:
        args["count_include_pad"] = 1
    legacy_ok = ceil and (want is None or all(
        legacy_pool_size(n, k, s, q) == o for n, k, s, q, o in zip(in_sizes, kernel, stride, heads, want)))
    if ceil and legacy_ok and not ctx.remove_legacy_pad:
        args.update(window_args(kernel, stride, heads, heads))
        args["legacy_pad"] = CAFFE_LEGACY_POOLING
    elif not ceil:
        args.update(window_args(kernel, stride, heads, heads))
    else:
        if want is None:
            raise ctx.error(f"needs the shape of '{x}' to write Caffe's ceil-mode pooling with explicit pads")
        tails = tuple(max(0, (o - 1) * s + k - n - q)
                      for n, k, s, q, o in zip(in_sizes, kernel, stride, heads, want))
        args.update(window_args(kernel, stride, heads, tails))
    ops.append(make_op(op_type, [src], [y], **args))
    return ops, []


# ------------------------------------------------------------------------------- dense

@register("InnerProduct")
def translate_inner_product(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.inner_product_param
    x, y = layer.bottom[0], layer.top[0]
    n_out = int(p.num_output)
    need_blobs(ctx, pretrained_blobs, 2 if p.bias_term else 1, "weights" + (" and bias" if p.bias_term else ""))
    w = pretrained_blobs[0]
    if n_out < 1 or w.size % n_out:
        raise ctx.error(f"stored weights {w.shape} do not split into num_output={n_out} rows")
    w = w.reshape(-1, n_out).T if p.transpose else w.reshape(n_out, -1)
    axis = ctx.axis(p.axis, x)
    if ctx.has_shape(x):
        k = int(np.prod(ctx.shape(x)[axis:], dtype=np.int64))
        if k != w.shape[1]:
            raise ctx.error(f"stored weights give {w.shape[1]} inputs per output but '{x}' {ctx.shape(x)} has {k}"
                            f" values from axis {axis} on")
    if p.bias_term:
        b = pretrained_blobs[1].reshape(-1)
        if b.size != n_out:
            raise ctx.error(f"stored bias has {b.size} values for num_output={n_out}")
    else:
        b = np.zeros(n_out, np.float32)
    params = [ctx.tensor(f"{y}_w", w), ctx.tensor(f"{y}_b", b)]
    return [make_op("FC", [x, params[0].name, params[1].name], [y], axis=axis if axis != 1 else None)], params


@register("ROIPooling")
def translate_roi_pooling(layer, pretrained_blobs, is_test, ctx, **_):
    p = layer.roi_pooling_param
    if p.pooled_h < 1 or p.pooled_w < 1:
        raise ctx.error(f"pooled_h and pooled_w must be positive, got ({p.pooled_h}, {p.pooled_w})")
    if len(layer.bottom) != 2:
        raise ctx.error(f"needs 2 bottoms (features, rois), got {list(layer.bottom)}")
    outputs = [layer.top[0]] if is_test else [layer.top[0], ctx.fresh(f"{layer.top[0]}_argmaxes")]
    return [make_op("RoIPool", list(layer.bottom), outputs, pooled_h=int(p.pooled_h), pooled_w=int(p.pooled_w),
                    spatial_scale=float(p.spatial_scale), order="NCHW", is_test=1 if is_test else None)], []
