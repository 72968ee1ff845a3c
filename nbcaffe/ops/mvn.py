"""Mean-variance normalization (Caffe's MVN layer): MVN and MVNGradient.

Caffe2 had no such op (its caffe_translator refused MVN layers).  The statistics are taken
per row of a 2-D view of X: ``(N * C, spatial)`` by default, ``(N, C * spatial)`` with
``across_channels=1``.  Caffe divides by ``std + eps`` (not ``sqrt(var + eps)`` as
InstanceNorm/LayerNorm do), with the biased variance; this op keeps Caffe's formula, so a
translated model gives Caffe's numbers (OpenCV's importer differs by up to 0.17 on
``eps=0.1``).  Sums accumulate in float64.
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


def _noop():
    pass


@numba.njit(cache=True, error_model="numpy")
def mvn_cpu(x, normalize_variance, eps, y):
    """Per row of the C-contiguous (A, B) views x, y: y = x - mean, divided by
    (std + eps) when ``normalize_variance``.  y may alias x (every read of a row precedes
    its writes)."""
    rows, n = x.shape
    for a in range(rows):
        total = 0.0
        for b in range(n):
            total += x[a, b]
        mean = total / n
        if normalize_variance:
            sq = 0.0
            for b in range(n):
                d = x[a, b] - mean
                sq += d * d
            denom = math.sqrt(sq / n) + eps
            for b in range(n):
                y[a, b] = (x[a, b] - mean) / denom
        else:
            for b in range(n):
                y[a, b] = x[a, b] - mean


@numba.njit(cache=True, error_model="numpy")
def mvn_grad_cpu(x, dy, normalize_variance, eps, dx):
    """Per row of the (A, B) views: dx = dy - mean(dy), and with ``normalize_variance``
    dx = (dy - mean(dy)) / s - (x - mean) * sum(dy * (x - mean)) / (B * std * s²), s = std + eps
    (the second term is 0 for a constant row).  dx may alias dy."""
    rows, n = x.shape
    for a in range(rows):
        total = 0.0
        gsum = 0.0
        for b in range(n):
            total += x[a, b]
            gsum += dy[a, b]
        mean = total / n
        gmean = gsum / n
        if normalize_variance:
            sq = 0.0
            dot = 0.0
            for b in range(n):
                d = x[a, b] - mean
                sq += d * d
                dot += dy[a, b] * d
            std = math.sqrt(sq / n)
            s = std + eps
            coef = dot / (n * std * s * s) if std > 0.0 else 0.0
            for b in range(n):
                dx[a, b] = (dy[a, b] - gmean) / s - (x[a, b] - mean) * coef
        else:
            for b in range(n):
                dx[a, b] = dy[a, b] - gmean


def mvn_rows(shape, across_channels):
    """(rows, row length) of the 2-D view: (N*C, rest) or (N, C*rest)."""
    shape = tuple(int(d) for d in shape)
    lead = 1 if across_channels else 2
    rows = int(np.prod(shape[:lead], dtype=np.int64))
    return rows, int(np.prod(shape[lead:], dtype=np.int64))


def _check(args, shape, dtype, what="X"):
    if args["order"] != "NCHW":
        raise errors.ArgumentError(f"MVN: order must be 'NCHW' (Caffe's layout), got {args['order']!r}")
    if not args["eps"] >= 0.0:
        raise errors.ArgumentError(f"MVN: eps must be >= 0, got {args['eps']}")
    need = 1 if args["across_channels"] else 2
    if len(shape) < need:
        raise errors.ShapeError(
            f"{what} {tuple(shape)}: MVN needs at least {need} dims ({'N' if need == 1 else 'N, C'}, ...)")
    if np.dtype(dtype).kind != "f":
        raise errors.ShapeError(f"{what} must be a floating tensor, got {np.dtype(dtype).name}")


def mvn_reference(x, across_channels, normalize_variance, eps):
    """float64 NumPy MVN over the rows of mvn_rows (used by MVN.reference and tests)."""
    rows = x.reshape(mvn_rows(x.shape, across_channels)).astype(np.float64)
    centred = rows - rows.mean(axis=1, keepdims=True)
    if normalize_variance:
        centred = centred / (np.sqrt((centred ** 2).mean(axis=1, keepdims=True)) + eps)
    return centred.reshape(x.shape)


MVN_ARGS = {
    "across_channels": Arg("bool", False, "one set of statistics per sample instead of per (sample, channel)"),
    "normalize_variance": Arg("bool", True, "divide by std + eps (else only subtract the mean)"),
    "eps": Arg("float", 1e-9, "added to the standard deviation (Caffe's default 1e-9)"),
    "order": Arg("str", "NCHW", "only NCHW"),
}


@register_op
class MVN(Operator):
    """Y = (X - mean) / (std + eps) per (n, c) over the remaining axes (Caffe's MVN layer).

    Statistics: mean and the biased standard deviation over every axis after C
    (``across_channels=0``, default) or after N (``across_channels=1``).
    ``normalize_variance=0`` only subtracts the mean.  Note Caffe's divisor ``std + eps``,
    unlike InstanceNorm's ``sqrt(var + eps)``.  X is (N, C, ...) (at least 2-D, or 1-D with
    across_channels); Y may alias X.  Arguments: ``across_channels`` 0,
    ``normalize_variance`` 1, ``eps`` 1e-9, ``order`` 'NCHW' (the only layout).
    """

    inputs, outputs = ("X",), ("Y",)
    inplace = {0: 0}
    args = dict(MVN_ARGS)
    cpu = staticmethod(mvn_cpu)
    gradient = staticmethod(simple_gradient("MVNGradient", [I(0), GO(0)], [GI(0)]))

    @staticmethod
    def infer(args, shapes, dtypes):
        _check(args, shapes[0], dtypes[0])
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, across_channels=False, normalize_variance=True, eps=1e-9):
        return (mvn_reference(X, across_channels, normalize_variance, eps).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if x.size == 0:
            return _noop
        view = mvn_rows(tuple(x.shape), self.args["across_channels"])
        return functools.partial(self.kernel, x.reshape(view), bool(self.args["normalize_variance"]),
                                 float(self.args["eps"]), y.reshape(view))


@register_op
class MVNGradient(Operator):
    """dX of MVN from X and dY (the statistics are recomputed from X).

    Without normalize_variance: dX = dY - mean(dY).  With it, per row of B values,
    s = std + eps: dX = (dY - mean(dY)) / s - (X - mean) * sum(dY * (X - mean)) / (B * std * s²)
    (0 for the second term of a constant row).  dX may alias dY.  Arguments as MVN.
    """

    inputs, outputs = ("X", "dY"), ("dX",)
    inplace = {1: 0}
    args = dict(MVN_ARGS)
    gradient = None
    cpu = staticmethod(mvn_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        _check(args, shapes[0], dtypes[0])
        if tuple(shapes[1]) != tuple(shapes[0]):
            raise errors.ShapeError(f"dY {tuple(shapes[1])} must have X's shape {tuple(shapes[0])}")
        return [tuple(shapes[0])], [dtypes[1]]

    @staticmethod
    def reference(X, dY, across_channels=False, normalize_variance=True, eps=1e-9):
        view = mvn_rows(X.shape, across_channels)
        x = X.reshape(view).astype(np.float64)
        g = dY.reshape(view).astype(np.float64)
        d = x - x.mean(axis=1, keepdims=True)
        dx = g - g.mean(axis=1, keepdims=True)
        if normalize_variance:
            std = np.sqrt((d ** 2).mean(axis=1, keepdims=True))
            s = std + eps
            safe = np.where(std > 0, std, 1.0)
            coef = np.where(std > 0, (g * d).sum(axis=1, keepdims=True) / (view[1] * safe * s * s), 0.0)
            dx = dx / s - d * coef
        return (dx.reshape(X.shape).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        x, dy = inputs
        if x.size == 0:
            return _noop
        view = mvn_rows(tuple(x.shape), self.args["across_channels"])
        return functools.partial(self.kernel, x.reshape(view), dy.reshape(view),
                                 bool(self.args["normalize_variance"]), float(self.args["eps"]),
                                 outputs[0].reshape(view))
