"""Resize: N-dimensional nearest / linear / cubic interpolation with ONNX's coordinate
transformations, antialiasing and crop-and-resize extrapolation, and its gradient.

Interpolation is separable, so the op runs one pass per resized axis (in ascending axis order,
as ONNX's reference does), each pass a 1-D weighted gather along that axis:

    Y[o, j, i] = Σ_t w[j, t] · X[o, idx[j, t], i]      (or ``extrapolation_value`` where the
                                                        source coordinate of j is outside)

The per-axis tables (idx, w, valid) are computed once on the host at bind time
(:func:`axis_taps`); the kernels only gather.  Passes accumulate and store in float64 (as the
reference does), the last one writes the output dtype (integers rounded half to even and
clipped).  ResizeGradient runs the transposed passes in reverse axis order (scatter-adds of
w · dY; deterministic on the CPU, atomic adds on CUDA).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ARGS = {
    "scales": Arg("floats", (), "scale per dim (output = floor(input * scale))"),
    "sizes": Arg("ints", (), "output size per dim (overrides the sizes the scales give)"),
    "mode": Arg("str", "nearest", "nearest | linear | cubic"),
    "coordinate_transformation_mode": Arg("str", "half_pixel", "how output indices map to input coordinates"),
    "nearest_mode": Arg("str", "round_prefer_floor", "rounding of mode nearest"),
    "cubic_coeff_a": Arg("float", -0.75, "the cubic kernel's a"),
    "exclude_outside": Arg("int", 0, "drop (and renormalise) taps outside the input"),
    "extrapolation_value": Arg("float", 0.0, "value outside the crop (tf_crop_and_resize)"),
    "antialias": Arg("int", 0, "widen linear/cubic filters when downsampling"),
    "roi": Arg("floats", (), "tf_crop_and_resize: normalised starts per dim, then ends"),
}


# ----------------------------------------------------------------------------- host tables


def _coefficients(ratio, scale, mode, nearest_mode, a, antialias):
    """Filter weights for one output position, left to right (ONNX's conventions)."""
    if mode == "nearest":
        if ratio == 1.0:  # an exact input position
            return np.array([0.0, 1.0])
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
              "floor": False, "ceil": True}[nearest_mode]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])
    if mode == "linear":
        if not antialias:
            return np.array([1.0 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(math.floor(-1.0 / s) + 1)
        taps = (np.arange(start, 2 - start) - ratio) * s
        w = np.clip(1.0 - np.abs(taps), 0.0, 1.0)
        return w / w.sum()
    if not antialias:
        r, q = ratio, 1.0 - ratio
        return np.array([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                         ((a + 2) * r - (a + 3)) * r * r + 1,
                         ((a + 2) * q - (a + 3)) * q * q + 1,
                         ((a * (q + 1) - 5 * a) * (q + 1) + 8 * a) * (q + 1) - 4 * a])
    s = min(scale, 1.0)
    start = int(math.floor(-2.0 / s) + 1)
    z = np.abs(s * (np.arange(start, 2 - start) - ratio))
    w = np.where(z <= 1, (a + 2) * z ** 3 - (a + 3) * z ** 2 + 1,
                 np.where(z < 2, a * z ** 3 - 5 * a * z ** 2 + 8 * a * z - 4 * a, 0.0))
    return w / w.sum()


def source_coordinates(n_in, n_out, scale, ctm, roi=(0.0, 1.0)):
    """(x, outside): the input coordinate of every output index along one axis, and where it
    falls outside the input (tf_crop_and_resize only)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    outside = np.zeros(n_out, bool)
    if ctm == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            x = np.full(n_out, (end - start) * (n_in - 1) / 2)
        else:
            x = y * (end - start) * (n_in - 1) / (width - 1)
        x = x + start * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    else:  # half_pixel_symmetric: the centre of the input maps to the centre of the output
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    return x, outside


def axis_taps(n_in, n_out, scale, args, roi=(0.0, 1.0)):
    """(idx (n_out, K) int64, w (n_out, K) float64, valid (n_out,) uint8) for one axis."""
    x, outside = source_coordinates(n_in, n_out, scale, args["coordinate_transformation_mode"], roi)
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)
    mode = args["mode"]
    rows = [_coefficients(float(r), scale, mode, args["nearest_mode"], args["cubic_coeff_a"], args["antialias"])
            for r in ratios]
    k = len(rows[0]) if rows else 1
    w = np.array(rows, np.float64).reshape(n_out, k)
    # the k inputs nearest to x (ties to the smaller index), counted in an edge-padded axis
    pad = -(-k // 2)
    xp = x + pad
    p = np.floor(xp)
    frac = xp - p
    if k % 2 == 0:
        first = np.where(frac == 0, -(k // 2), -(k // 2) + 1)
    else:
        first = np.where(frac <= 0.5, -((k - 1) // 2), -((k - 1) // 2) + 1)
    idx = (p.astype(np.int64) + first)[:, None] + np.arange(k)[None, :] - pad
    if args["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    idx = np.clip(idx, 0, max(n_in - 1, 0)).astype(np.int64)
    return idx, w, (~outside).astype(np.uint8)


def resize_plan(shape, args, where="Resize"):
    """(out_shape, [(axis, scale, idx, w, valid)]) for the axes that change."""
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    for name, allowed in (("mode", MODES), ("coordinate_transformation_mode", COORDINATE_MODES),
                          ("nearest_mode", NEAREST_MODES)):
        if args[name] not in allowed:
            raise errors.ArgumentError(f"{where}: {name} '{args[name]}' is not one of {', '.join(allowed)}")
    scales, sizes = list(args["scales"]), list(args["sizes"])
    if sizes:
        if len(sizes) != rank:
            raise errors.ArgumentError(f"{where}: sizes {sizes} need one entry per dim of {shape}")
        out_shape = tuple(int(s) for s in sizes)
        if not scales:
            scales = [o / d if d else 1.0 for o, d in zip(out_shape, shape)]
    elif scales:
        if len(scales) != rank:
            raise errors.ArgumentError(f"{where}: scales {scales} need one entry per dim of {shape}")
        out_shape = tuple(int(d * s) for d, s in zip(shape, scales))
    else:
        raise errors.ArgumentError(f"{where}: give 'scales' or 'sizes'")
    if any(s <= 0 for s in scales):
        raise errors.ArgumentError(f"{where}: scales must be positive, got {scales}")
    roi = list(args["roi"]) or [0.0] * rank + [1.0] * rank
    crop = args["coordinate_transformation_mode"] == "tf_crop_and_resize"
    if len(roi) != 2 * rank:
        raise errors.ArgumentError(f"{where}: roi {roi} needs 2 entries per dim of {shape}")
    passes = []
    for axis in range(rank):
        axis_roi = (roi[axis], roi[axis + rank])
        identity = math.isclose(scales[axis], 1.0) and out_shape[axis] == shape[axis] and \
            (not crop or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0)))
        if identity or out_shape[axis] == 0:
            continue
        if shape[axis] == 0:
            raise errors.ShapeError(f"{where}: cannot resize the empty dim {axis} of {shape} to {out_shape[axis]}")
        idx, w, valid = axis_taps(shape[axis], out_shape[axis], float(scales[axis]), args, axis_roi)
        passes.append((axis, idx, w, valid))
    return out_shape, passes


def _views(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, int(shape[axis]), inner


# ----------------------------------------------------------------------------- CPU kernels


@numba.njit(cache=True)
def resize_axis_cpu(x, y, idx, w, valid, extrapolation):
    """y[o, j, i] = Σ_t w[j, t] x[o, idx[j, t], i] (float64 sums), or extrapolation where
    valid[j] == 0; x (outer, n_in, inner), y (outer, n_out, inner)."""
    outer, n_out, inner = y.shape
    taps = idx.shape[1]
    for o in range(outer):
        for j in range(n_out):
            if valid[j] == 0:
                for i in range(inner):
                    y[o, j, i] = extrapolation
                continue
            for i in range(inner):
                s = 0.0
                for t in range(taps):
                    s += w[j, t] * x[o, idx[j, t], i]
                y[o, j, i] = s


@numba.njit(cache=True)
def round_clip_cpu(x, y, lo, hi):
    """y[i] = clip(round-half-even(x[i]), lo, hi) (flat arrays; y integer)."""
    for i in range(x.size):
        v = np.rint(x[i])
        y[i] = lo if v < lo else (hi if v > hi else v)


@numba.njit(cache=True)
def resize_axis_grad_cpu(dy, dx, idx, w, valid):
    """dx = 0, then dx[o, idx[j, t], i] += w[j, t] dy[o, j, i] for valid j (transposed pass)."""
    outer, n_out, inner = dy.shape
    taps = idx.shape[1]
    for o in range(outer):
        for k in range(dx.shape[1]):
            for i in range(inner):
                dx[o, k, i] = 0
        for j in range(n_out):
            if valid[j] == 0:
                continue
            for t in range(taps):
                for i in range(inner):
                    dx[o, idx[j, t], i] += w[j, t] * dy[o, j, i]


class ResizeKernels:
    """``axis(x, y, idx, w, valid, extrapolation)``: one forward pass; ``round_clip(x, y, lo,
    hi)``: the final store into an integer output; ``axis_grad(dy, dx, idx, w, valid)``: one
    transposed pass (same slot on every device)."""

    __slots__ = ("axis", "round_clip", "axis_grad")

    def __init__(self, axis, round_clip, axis_grad):
        self.axis = axis
        self.round_clip = round_clip
        self.axis_grad = axis_grad


def _identity_pass(shape):
    n = shape[0] if shape else 1
    return (0, np.arange(n, dtype=np.int64)[:, None], np.ones((n, 1)), np.ones(n, np.uint8))


def _noop():
    pass


def _run_all(calls):
    for call in calls:
        call()


@register_op
class Resize(Operator):
    """Y = X resized by ``scales`` (floor(dim * scale)) or to ``sizes`` with ``mode`` nearest,
    linear or cubic along every dim (ONNX Resize semantics).

    ``coordinate_transformation_mode``: half_pixel (default), half_pixel_symmetric,
    pytorch_half_pixel, align_corners, asymmetric, tf_crop_and_resize (with ``roi`` and
    ``extrapolation_value``); ``nearest_mode``: round_prefer_floor (default), round_prefer_ceil,
    floor, ceil; ``cubic_coeff_a`` -0.75; ``exclude_outside`` 0; ``antialias`` 0 (widens the
    linear/cubic filter when downsampling).  Any numeric dtype; integer outputs are rounded
    half to even and clipped.  Gradient: ResizeGradient (the transposed interpolation).
    """

    inputs, outputs = ("X",), ("Y",)
    args = dict(ARGS)
    cpu = ResizeKernels(resize_axis_cpu, round_clip_cpu, resize_axis_grad_cpu)
    gradient = simple_gradient("ResizeGradient", [GO(0), I(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        if np.dtype(dtypes[0]) == np.bool_:
            raise errors.ShapeError("Resize needs a numeric input, got bool")
        return [resize_plan(shapes[0], args)[0]], [dtypes[0]]

    @staticmethod
    def reference(X, **args):
        out_shape, passes = resize_plan(X.shape, {**{k: v.default for k, v in ARGS.items()}, **args})
        y = X.astype(np.float64)
        for axis, idx, w, valid in passes:
            moved = np.moveaxis(y, axis, 0)
            gathered = (moved[idx] * w.reshape(w.shape + (1,) * (moved.ndim - 1))).sum(axis=1)
            gathered[valid == 0] = args.get("extrapolation_value", 0.0)
            y = np.moveaxis(gathered, 0, axis)
        y = y.reshape(out_shape)
        if np.issubdtype(X.dtype, np.integer):
            info = np.iinfo(X.dtype)
            return (np.clip(np.rint(y), info.min, info.max).astype(X.dtype),)
        return (y.astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y.size == 0:
            return _noop
        out_shape, passes = resize_plan(x.shape, self.args, self.type)
        if not passes:
            passes = [_identity_pass(tuple(x.shape))]
        integer = np.issubdtype(y.dtype, np.integer)
        calls = []
        current = x
        shape = list(x.shape)
        for k, (axis, idx, w, valid) in enumerate(passes):
            shape[axis] = idx.shape[0]
            last = k == len(passes) - 1
            target = y if (last and not integer) else self.ctx.empty(tuple(shape), np.float64)
            src3 = current.reshape(_views(tuple(current.shape), axis))
            dst3 = target.reshape(_views(tuple(shape), axis))
            tables = [self.ctx.from_host(np.ascontiguousarray(a)) for a in (idx, w, valid)]
            calls.append(functools.partial(self.kernel.axis, src3, dst3, *tables,
                                           float(self.args["extrapolation_value"])))
            current = target
        if integer:
            info = np.iinfo(y.dtype)
            lo, hi = float(info.min), float(info.max)
            calls.append(functools.partial(self.kernel.round_clip, current.reshape(current.size),
                                           y.reshape(y.size), lo, hi))
        return functools.partial(_run_all, calls) if len(calls) > 1 else calls[0]


@register_op
class ResizeGradient(Operator):
    """dX = the transpose of Resize applied to dY (each input element receives the weighted dY
    of every output that read it; extrapolated outputs give nothing).  Inputs dY and X (read for
    its shape); same arguments as Resize."""

    inputs, outputs = ("dY", "X"), ("dX",)
    input_device = {1: "any"}
    args = dict(ARGS)
    cpu = Resize.cpu
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        out_shape, _ = resize_plan(shapes[1], args, "ResizeGradient")
        if tuple(shapes[0]) != out_shape:
            raise errors.ShapeError(f"ResizeGradient: dY {tuple(shapes[0])} must have Resize's output shape"
                                    f" {out_shape} for X {tuple(shapes[1])}")
        return [tuple(shapes[1])], [dtypes[0]]

    @staticmethod
    def reference(dY, X, **args):
        args = {**{k: v.default for k, v in ARGS.items()}, **args}
        _out, passes = resize_plan(X.shape, args)
        g = dY.astype(np.float64)
        for axis, idx, w, valid in reversed(passes):
            moved = np.moveaxis(g, axis, 0)
            n_in = X.shape[axis]
            acc = np.zeros((n_in,) + moved.shape[1:])
            for j in range(idx.shape[0]):
                if valid[j]:
                    for t in range(idx.shape[1]):
                        acc[idx[j, t]] += w[j, t] * moved[j]
            g = np.moveaxis(acc, 0, axis)
        return (g.reshape(X.shape).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        dy, x = inputs
        dx = outputs[0]
        _out, passes = resize_plan(x.shape, self.args, self.type)
        if not passes:
            passes = [_identity_pass(tuple(x.shape))]
        calls = []
        current = dy
        shape = list(dy.shape)
        for k, (axis, idx, w, valid) in enumerate(reversed(passes)):
            shape[axis] = int(x.shape[axis])
            last = k == len(passes) - 1
            target = dx if last else self.ctx.empty(tuple(shape), dy.dtype)
            src3 = current.reshape(_views(tuple(current.shape), axis))
            dst3 = target.reshape(_views(tuple(shape), axis))
            tables = [self.ctx.from_host(np.ascontiguousarray(a)) for a in (idx, w, valid)]
            calls.append(functools.partial(self.kernel.axis_grad, src3, dst3, *tables))
            current = target
        return functools.partial(_run_all, calls) if len(calls) > 1 else calls[0]
