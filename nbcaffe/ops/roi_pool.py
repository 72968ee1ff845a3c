"""Region-of-interest max pooling (Fast R-CNN; Caffe's ROIPooling layer): RoIPool and
RoIPoolGradient.

Geometry follows Caffe2's RoIPoolOp (caffe2/operators/roi_pool_op.cc), itself a copy of the
Fast R-CNN Caffe layer: each RoI row is ``[batch_index, x1, y1, x2, y2]`` in input-image
coordinates; the corners are scaled by ``spatial_scale`` and rounded half away from zero
(C's ``round``); the RoI spans ``max(end - start + 1, 1)`` cells per axis and is cut into
``pooled_h x pooled_w`` bins of float size ``roi / pooled``, bin ``p`` covering
``[floor(p * bin), ceil((p + 1) * bin))`` offset by the RoI start and clipped to the
image.  An empty bin gives 0 and argmax -1.  The bin arithmetic is done in float32, as in
Caffe2, so bin edges match the original bit for bit.  Maxima scan rows then columns
starting from -FLT_MAX with a strict ``>``, as in Caffe2: the first maximum wins, NaN never
wins, and a bin holding only NaN/-inf gives -FLT_MAX with argmax -1.  (nbcaffe's MaxPool
propagates NaN instead; RoIPool keeps the Caffe/Caffe2 numbers, which translated models
are compared with.)

A batch index outside [0, N) raises ShapeError naming the RoI (Caffe2 enforced the same);
the kernels report the first bad RoI instead of writing out of bounds.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, GradientContext, GradientError, I, O
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

_F32 = np.float32
LOWEST = float(np.finfo(np.float32).min)  # Caffe2 starts every maximum at -FLT_MAX


@numba.njit(cache=True)
def _round_half_away(v):
    """C's round() of a float32 value (exact in float64: no double rounding)."""
    d = np.float64(v)
    return int(math.floor(d + 0.5)) if d >= 0.0 else -int(math.floor(-d + 0.5))


@numba.njit(cache=True)
def roi_window(rois, r, scale, ph, pw, pooled_h, pooled_w, height, width):
    """(hstart, hend, wstart, wend) of bin (ph, pw) of RoI r, clipped to the image."""
    start_w = _round_half_away(_F32(rois[r, 1]) * scale)
    start_h = _round_half_away(_F32(rois[r, 2]) * scale)
    end_w = _round_half_away(_F32(rois[r, 3]) * scale)
    end_h = _round_half_away(_F32(rois[r, 4]) * scale)
    bin_h = _F32(max(end_h - start_h + 1, 1)) / _F32(pooled_h)
    bin_w = _F32(max(end_w - start_w + 1, 1)) / _F32(pooled_w)
    hstart = int(math.floor(_F32(ph) * bin_h))
    wstart = int(math.floor(_F32(pw) * bin_w))
    hend = int(math.ceil(_F32(ph + 1) * bin_h))
    wend = int(math.ceil(_F32(pw + 1) * bin_w))
    hstart = min(max(hstart + start_h, 0), height)
    hend = min(max(hend + start_h, 0), height)
    wstart = min(max(wstart + start_w, 0), width)
    wend = min(max(wend + start_w, 0), width)
    return hstart, hend, wstart, wend


@numba.njit(cache=True)
def first_bad_roi(rois, batch):
    """Index of the first RoI whose batch index is not an integer in [0, batch), else -1."""
    for r in range(rois.shape[0]):
        b = rois[r, 0]
        if not (b >= 0 and b < batch):
            return r
    return -1


@numba.njit(cache=True)
def roi_pool_cpu(x, rois, scale, want_argmax, y, argmax):
    """y[r, c, ph, pw] = max of x[batch(r), c] over the bin; argmax = h * W + w of it (or -1)
    when ``want_argmax``.  x (N, C, H, W), rois (R, 5), y and argmax (R, C, PH, PW).
    Returns -1, or the index of the first RoI with a bad batch index (nothing written)."""
    bad = first_bad_roi(rois, x.shape[0])
    if bad >= 0:
        return bad
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    pooled_h, pooled_w = y.shape[2], y.shape[3]
    scale = _F32(scale)
    for r in range(rois.shape[0]):
        n = int(rois[r, 0])
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                h0, h1, w0, w1 = roi_window(rois, r, scale, ph, pw, pooled_h, pooled_w, height, width)
                empty = h1 <= h0 or w1 <= w0
                for c in range(channels):
                    best = 0.0 if empty else LOWEST
                    where = -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = x[n, c, h, w]
                            if v > best:
                                best = v
                                where = h * width + w
                    y[r, c, ph, pw] = best
                    if want_argmax:
                        argmax[r, c, ph, pw] = where
    return -1


@numba.njit(cache=True)
def roi_pool_grad_cpu(rois, argmax, dy, dx):
    """dx[batch(r), c] at plane position argmax[r, c, ph, pw] += dy[r, c, ph, pw] (argmax -1
    adds nothing); dx (N, C, H, W) is zeroed first.  Returns -1 or the first bad RoI."""
    bad = first_bad_roi(rois, dx.shape[0])
    if bad >= 0:
        return bad
    dx[:] = 0.0
    width = dx.shape[3]
    for r in range(rois.shape[0]):
        n = int(rois[r, 0])
        for c in range(dy.shape[1]):
            for ph in range(dy.shape[2]):
                for pw in range(dy.shape[3]):
                    k = argmax[r, c, ph, pw]
                    if k >= 0:
                        dx[n, c, k // width, k % width] += dy[r, c, ph, pw]
    return -1


def raise_bad_roi(bad, rois, batch, what):
    if bad < 0:
        return
    host = rois if isinstance(rois, np.ndarray) else rois.copy_to_host()
    raise errors.ShapeError(f"{what}: RoI {bad} {host[bad].tolist()} has batch index {host[bad, 0]!r}, outside"
                            f" [0, {batch}) of X's batch")


def _check_rois(shape, dtype, what):
    if len(shape) != 2 or shape[1] != 5:
        raise errors.ShapeError(f"{what}: rois must be (num_rois, 5) rows [batch, x1, y1, x2, y2], got"
                                f" {tuple(shape)}")
    if np.dtype(dtype).kind != "f":
        raise errors.ShapeError(f"{what}: rois must be a floating tensor, got {np.dtype(dtype).name}")


def _check_x(args, shape, dtype, what):
    if args["order"] != "NCHW":
        raise errors.ArgumentError(f"{what}: order must be 'NCHW' (the only layout), got {args['order']!r}")
    if len(shape) != 4:
        raise errors.ShapeError(f"{what}: X must be 4-D (N, C, H, W), got {tuple(shape)}")
    if np.dtype(dtype).kind != "f":
        raise errors.ShapeError(f"{what}: X must be a floating tensor, got {np.dtype(dtype).name}")
    if args["pooled_h"] < 1 or args["pooled_w"] < 1:
        raise errors.ArgumentError(f"{what}: pooled_h and pooled_w must be >= 1, got ({args['pooled_h']},"
                                   f" {args['pooled_w']})")


def roi_pool_reference(X, R, pooled_h, pooled_w, spatial_scale):
    """NumPy RoIPool (loops over bins, vectorised over channels): (Y, argmax)."""
    n, c, height, width = X.shape
    y = np.zeros((R.shape[0], c, pooled_h, pooled_w), X.dtype)
    arg = np.full(y.shape, -1, np.int32)
    scale = _F32(spatial_scale)

    def rnd(v):
        return int(np.sign(v) * np.floor(abs(float(v)) + 0.5))

    for r, roi in enumerate(R):
        b = int(roi[0])
        sw, sh, ew, eh = (rnd(_F32(roi[k]) * scale) for k in (1, 2, 3, 4))
        bin_h = _F32(max(eh - sh + 1, 1)) / _F32(pooled_h)
        bin_w = _F32(max(ew - sw + 1, 1)) / _F32(pooled_w)
        for ph in range(pooled_h):
            h0 = min(max(int(np.floor(_F32(ph) * bin_h)) + sh, 0), height)
            h1 = min(max(int(np.ceil(_F32(ph + 1) * bin_h)) + sh, 0), height)
            for pw in range(pooled_w):
                w0 = min(max(int(np.floor(_F32(pw) * bin_w)) + sw, 0), width)
                w1 = min(max(int(np.ceil(_F32(pw + 1) * bin_w)) + sw, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                window = X[b, :, h0:h1, w0:w1].reshape(c, -1).astype(np.float64)
                masked = np.where(window > LOWEST, window, -np.inf)  # what can beat -FLT_MAX
                k = masked.argmax(axis=1)
                best = masked[np.arange(c), k]
                none = best == -np.inf
                y[r, :, ph, pw] = np.where(none, LOWEST, best)
                arg[r, :, ph, pw] = np.where(none, -1, (h0 + k // (w1 - w0)) * width + w0 + k % (w1 - w0))
    return y, arg


ROI_ARGS = {"pooled_h": Arg("int", 1, "output height"), "pooled_w": Arg("int", 1, "output width"),
            "spatial_scale": Arg("float", 1.0, "factor from RoI coordinates to X's cells"),
            "order": Arg("str", "NCHW", "only NCHW"),
            "is_test": Arg("bool", False, "1: produce Y only (no argmaxes)")}


def _roi_pool_gradient(op, g_output):
    """RoIPoolGradient(X, rois, argmaxes, dY) -> dX; needs the forward's argmaxes output."""
    if len(op.output) < 2:
        raise GradientError(f"Exception when creating gradient for [RoIPool]: the op produced no argmaxes"
                            f" output (is_test mode, outputs {list(op.output)}), which RoIPoolGradient needs")
    ctx = GradientContext(op, g_output)
    ctx.add("RoIPoolGradient", [I(0), I(1), O(1), GO(0)], [GI(0)])
    return ctx.result()


@register_op
class RoIPool(Operator):
    """Y[r, c] = max pooling of X[rois[r, 0], c] over the RoI rois[r, 1:5] cut into pooled_h x pooled_w bins.

    Inputs X (N, C, H, W) and rois (R, 5) rows [batch_index, x1, y1, x2, y2] in the
    coordinates of the image that X is ``spatial_scale`` times smaller than.  Outputs Y
    (R, C, pooled_h, pooled_w) and, unless ``is_test=1``, argmaxes (int32, Y's shape; the
    flat h * W + w of each maximum within its plane, -1 for an empty bin).  Arguments:
    ``pooled_h`` 1, ``pooled_w`` 1, ``spatial_scale`` 1.0, ``order`` 'NCHW' (only),
    ``is_test`` 0.  Bin geometry and rounding as Caffe2/Fast R-CNN (module docstring).
    """

    inputs, outputs = ("X", "rois"), ("Y", "argmaxes")
    num_outputs = (1, 2)
    args = dict(ROI_ARGS)
    cpu = staticmethod(roi_pool_cpu)
    gradient = staticmethod(_roi_pool_gradient)

    def setup(self):
        if self.args["is_test"] and len(self.output_names) > 1:
            raise errors.SchemaError(f"{self.where()}: is_test=1 produces Y only, but the OperatorDef names"
                                     f" {len(self.output_names)} outputs {list(self.output_names)}")

    @staticmethod
    def infer(args, shapes, dtypes):
        _check_x(args, shapes[0], dtypes[0], "RoIPool")
        _check_rois(shapes[1], dtypes[1], "RoIPool")
        y = (int(shapes[1][0]), int(shapes[0][1]), int(args["pooled_h"]), int(args["pooled_w"]))
        return [y, y], [dtypes[0], np.dtype(np.int32)]

    @staticmethod
    def reference(X, rois, pooled_h=1, pooled_w=1, spatial_scale=1.0):
        raise_bad_roi(first_bad_roi(rois, X.shape[0]), rois, X.shape[0], "RoIPool")
        return roi_pool_reference(X, rois, pooled_h, pooled_w, spatial_scale)

    def bind(self, inputs, outputs):
        x, rois = inputs
        want = len(outputs) > 1
        argmax = outputs[1] if want else self.ctx.empty((1, 1, 1, 1), np.int32)
        kernel = functools.partial(self.kernel, x, rois, float(self.args["spatial_scale"]), want, outputs[0],
                                   argmax)
        batch = int(x.shape[0])

        def call():
            raise_bad_roi(kernel(), rois, batch, self.where())

        return call


@register_op
class RoIPoolGradient(Operator):
    """dX[rois[r, 0], c] at argmaxes[r, c, ph, pw] += dY[r, c, ph, pw], summed over every RoI and bin.

    Inputs X (only its shape is used), rois, argmaxes (from RoIPool with is_test=0) and dY
    (R, C, pooled_h, pooled_w); output dX with X's shape.  Caffe2 registered this op on CUDA
    only; here it runs on both devices (on CUDA the sum uses atomics, so its order varies).
    """

    inputs, outputs = ("X", "rois", "argmaxes", "dY"), ("dX",)
    args = dict(ROI_ARGS)
    gradient = None
    cpu = staticmethod(roi_pool_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        x, rois, arg, dy = (tuple(s) for s in shapes)
        _check_x(args, x, dtypes[0], "RoIPoolGradient")
        _check_rois(rois, dtypes[1], "RoIPoolGradient")
        want = (rois[0], x[1], int(args["pooled_h"]), int(args["pooled_w"]))
        if dy != want or arg != want:
            raise errors.ShapeError(f"RoIPoolGradient: argmaxes {arg} and dY {dy} must both be {want} for X {x},"
                                    f" rois {rois}")
        if np.dtype(dtypes[2]) != np.int32:
            raise errors.ShapeError(f"RoIPoolGradient: argmaxes must be int32, got {np.dtype(dtypes[2]).name}")
        return [x], [dtypes[3]]

    @staticmethod
    def reference(X, rois, argmaxes, dY, **_args):
        raise_bad_roi(first_bad_roi(rois, X.shape[0]), rois, X.shape[0], "RoIPoolGradient")
        dx = np.zeros(X.shape, np.float64)
        planes = dx.reshape(X.shape[0], X.shape[1], -1)
        for r in range(rois.shape[0]):
            b = int(rois[r, 0])
            for c in range(dY.shape[1]):
                for k, g in zip(argmaxes[r, c].ravel(), dY[r, c].ravel()):
                    if k >= 0:
                        planes[b, c, k] += g
        return (dx.astype(dY.dtype),)

    def bind(self, inputs, outputs):
        _x, rois, argmax, dy = inputs
        kernel = functools.partial(self.kernel, rois, argmax, dy, outputs[0])
        batch = int(outputs[0].shape[0])

        def call():
            raise_bad_roi(kernel(), rois, batch, self.where())

        return call
