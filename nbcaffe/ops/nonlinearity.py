"""Parametric and smooth activations: PRelu (learned slope) and Softplus, with gradients."""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import UnaryElementwise, UnaryGradient
from nbcaffe.registry import register_op

# ------------------------------------------------------------------------ PRelu


@numba.njit(cache=True)
def prelu_cpu(x, w, y):
    """y = x where x > 0, else w[c] * x, for x, y viewed (outer, C, inner), w (C).  y may alias x."""
    outer, channels, inner = x.shape
    for o in range(outer):
        for c in range(channels):
            slope = w[c]
            xr = x[o, c]
            yr = y[o, c]
            for i in range(inner):
                v = xr[i]
                yr[i] = v if v > 0 else v * slope


@numba.njit(cache=True)
def prelu_grad_cpu(dy, x, w, dx, dw):
    """dx = dy where x > 0, else w[c] * dy; dw[c] = Σ dy * x over x <= 0 (views (outer, C, inner))."""
    outer, channels, inner = x.shape
    for c in range(channels):
        dw[c] = 0
    for o in range(outer):
        for c in range(channels):
            slope = w[c]
            xr = x[o, c]
            gr = dy[o, c]
            dxr = dx[o, c]
            acc = 0.0
            for i in range(inner):
                v = xr[i]
                g = gr[i]
                if v > 0:
                    dxr[i] = g
                else:
                    dxr[i] = g * slope
                    acc += g * v
            dw[c] += acc


def prelu_view(order, x_shape, w_size):
    """(outer, C, inner) of X for a slope of ``w_size`` elements: a shared slope (1 element)
    covers everything; else C is dim 1 (NCHW) or the last dim (NHWC) and must equal w_size."""
    x_shape = tuple(x_shape)
    size = schema.prod(x_shape)
    if w_size == 1:
        return 1, 1, size
    if order not in ("NCHW", "NHWC"):
        raise errors.ArgumentError(f"order must be 'NCHW' or 'NHWC', got '{order}'")
    if len(x_shape) < 2:
        raise errors.ShapeError(f"a per-channel slope ({w_size} values) needs X of rank >= 2 (N, C, ...), got"
                                f" X {x_shape}")
    axis = 1 if order == "NCHW" else len(x_shape) - 1
    channels = x_shape[axis]
    if channels != w_size:
        raise errors.ShapeError(f"slope has {w_size} values but X {x_shape} has C={channels} channels (dim {axis}"
                                f" for order {order}); give 1 value (shared) or C")
    return schema.prod(x_shape[:axis]), channels, schema.prod(x_shape[axis + 1:])


def _prelu_dtypes(dtypes, names):
    if any(d != dtypes[0] for d in dtypes) or np.dtype(dtypes[0]).kind != "f":
        shown = ", ".join(f"{n} {np.dtype(d).name}" for n, d in zip(names, dtypes))
        raise errors.ShapeError(f"PRelu needs floating point inputs of one dtype; got {shown}")


def _prelu_reference_slope(X, slope, order):
    """The slope broadcast against X (reference helper, independent of prelu_view)."""
    w = slope.astype(np.float64).reshape(-1)
    if w.size == 1:
        return w[0]
    if order == "NCHW":
        return w.reshape((1, -1) + (1,) * (X.ndim - 2))
    return w  # NHWC: channels last


@register_op
class PRelu(Operator):
    """Y = X where X > 0, else slope * X, elementwise.  ``slope`` has 1 value (shared) or one per
    channel: dim 1 with ``order`` 'NCHW' (default), the last dim with 'NHWC'.  Y may alias X
    (but then no gradient: it needs the forward input)."""

    inputs, outputs = ("X", "slope"), ("Y",)
    inplace = {0: 0}
    args = {"order": "NCHW"}
    cpu = staticmethod(prelu_cpu)
    gradient = simple_gradient("PReluGradient", [O(0), GO(0), I(0), I(1)], [GI(0), GI(1)])

    @staticmethod
    def infer(args, shapes, dtypes):
        prelu_view(args["order"], shapes[0], schema.prod(shapes[1]))
        _prelu_dtypes(dtypes, ("X", "slope"))
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, slope, order="NCHW"):
        x = X.astype(np.float64)
        return (np.where(x > 0, x, x * _prelu_reference_slope(X, slope, order)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w = inputs
        view = prelu_view(self.args["order"], x.shape, w.size)
        return functools.partial(self.kernel, x.reshape(view), w.reshape(w.size), outputs[0].reshape(view))


@register_op
class PReluGradient(Operator):
    """dX = dY where X > 0, else slope * dY; dslope = Σ dY * X over X <= 0, summed per channel
    (or over everything for a shared slope).  Inputs Y, dY, X, slope as in Caffe2 (Y unused)."""

    inputs, outputs = ("Y", "dY", "X", "slope"), ("dX", "dslope")
    args = {"order": "NCHW"}
    gradient = None
    cpu = staticmethod(prelu_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        prelu_view(args["order"], shapes[2], schema.prod(shapes[3]))
        if tuple(shapes[1]) != tuple(shapes[2]):
            raise errors.ShapeError(f"dY {tuple(shapes[1])} must have X's shape {tuple(shapes[2])}")
        _prelu_dtypes(dtypes[1:], ("dY", "X", "slope"))
        return [tuple(shapes[2]), tuple(shapes[3])], [dtypes[2], dtypes[3]]

    @staticmethod
    def reference(Y, dY, X, slope, order="NCHW"):
        x = X.astype(np.float64)
        g = dY.astype(np.float64)
        w = _prelu_reference_slope(X, slope, order)
        dx = np.where(x > 0, g, g * w)
        contrib = np.where(x > 0, 0.0, g * x)
        if slope.size == 1:
            dw = np.full(slope.shape, contrib.sum())
        elif order == "NCHW":
            dw = contrib.sum(axis=tuple(a for a in range(X.ndim) if a != 1)).reshape(slope.shape)
        else:
            dw = contrib.reshape(-1, slope.size).sum(axis=0).reshape(slope.shape)
        return (dx.astype(X.dtype), dw.astype(slope.dtype))

    def bind(self, inputs, outputs):
        _, dy, x, w = inputs
        view = prelu_view(self.args["order"], x.shape, w.size)
        dx, dw = outputs
        return functools.partial(self.kernel, dy.reshape(view), x.reshape(view), w.reshape(w.size),
                                 dx.reshape(view), dw.reshape(dw.size))


# ------------------------------------------------------------------------ Softplus


def softplus(x):
    # NOTE: Caffe2 computed log(exp(x) + 1), whose exp overflows to inf above x ~ 88 in float32;
    # max(x, 0) + log1p(exp(-|x|)) is the same function with no overflow and full precision
    # in both tails (log1p keeps exp(x) << 1 exact for very negative x)
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def softplus_grad(y, dy):
    # dY/dX = sigmoid(X) = 1 - exp(-Y) (Caffe2's form, from the output); -expm1(-Y) keeps full
    # precision where Y is tiny (very negative X), where 1 - exp(-Y) cancels
    return -dy * math.expm1(-y)


def softplus_vector(x, y):
    """NumPy form for large tensors: log(exp(0) + exp(x)), NumPy's overflow-free logaddexp."""
    np.logaddexp(x, 0, out=y)


@register_op
class Softplus(UnaryElementwise):
    """Y = log(1 + exp(X)), elementwise, computed as max(X, 0) + log1p(exp(-|X|)) so large X does
    not overflow.  Y may alias X.  Float only."""

    float_only = True
    scalar = staticmethod(softplus)
    vector = staticmethod(softplus_vector)
    gradient = simple_gradient("SoftplusGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X):
        x = X.astype(np.float64)
        return ((np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(X.dtype),)


@register_op
class SoftplusGradient(UnaryGradient):
    """dX = dY * (1 - exp(-Y)) (reads the forward output Y; equals dY * sigmoid(X)).  dX may alias dY."""

    scalar = staticmethod(softplus_grad)

    @staticmethod
    def reference(Y, dY):
        return ((dY.astype(np.float64) * (1 - np.exp(-Y.astype(np.float64)))).astype(dY.dtype),)
