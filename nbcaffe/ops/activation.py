"""Activations: Relu, LeakyRelu, Sigmoid, Tanh, Elu (elementwise) and Softmax (row-wise)."""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import SizeSwitch, UnaryElementwise, UnaryGradient, choose
from nbcaffe.registry import register_op


def relu(x):
    return x if x > 0 else x * 0


def leaky_relu(x, alpha):
    return x if x >= 0 else x * alpha


def sigmoid(x):
    # NOTE: two branches so exp never overflows: exp(-x) for x >= 0, exp(x) otherwise
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def tanh(x):
    return math.tanh(x)


def elu(x, alpha):
    # expm1, not exp(x) - 1: in float32 the subtraction cancels near 0 (1e-5 relative error at
    # x = -1e-3), and the NumPy path (elu_vector) and the reference use expm1 too
    return x if x > 0 else alpha * math.expm1(x)


def relu_grad(y, dy):
    # Caffe2 convention: reads the forward OUTPUT, so dX = 0 where Y == 0 (X <= 0)
    return dy if y > 0 else dy * 0


def leaky_relu_grad(y, dy, alpha):
    return dy if y > 0 else dy * alpha


def sigmoid_grad(y, dy):
    return dy * y * (1 - y)


def tanh_grad(y, dy):
    return dy * (1 - y * y)


def elu_grad(y, dy, alpha):
    # for X <= 0, Y = alpha * (exp(X) - 1), so dY/dX = alpha * exp(X) = Y + alpha
    return dy if y > 0 else dy * (y + alpha)


def sigmoid_vector(x, y):
    """NumPy form of sigmoid for large tensors: 1 / (1 + exp(-x)); exp overflow gives 0."""
    with np.errstate(over="ignore"):
        np.negative(x, out=y)
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)


def tanh_vector(x, y):
    np.tanh(x, out=y)


def elu_vector(x, y, alpha):
    # NOTE: y may alias x (Elu runs in place), so the positive inputs are saved before y is
    # written; reading x afterwards would see min(x, 0) and turn every positive output into 0.
    positive = x > 0
    kept = x[positive]
    np.minimum(x, 0, out=y)
    np.expm1(y, out=y)
    y *= alpha
    y[positive] = kept


@register_op
class Relu(UnaryElementwise):
    """Y = max(X, 0), elementwise.  Y may alias X."""

    scalar = staticmethod(relu)
    gradient = simple_gradient("ReluGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X):
        return (np.where(X > 0, X, 0).astype(X.dtype),)


@register_op
class ReluGradient(UnaryGradient):
    """dX = dY where Y > 0, else 0 (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(relu_grad)

    @staticmethod
    def reference(Y, dY):
        return (np.where(Y > 0, dY, 0).astype(dY.dtype),)


@register_op
class LeakyRelu(UnaryElementwise):
    """Y = X if X >= 0 else alpha * X, elementwise.  Y may alias X.  ``alpha`` default 0.01."""

    args = {"alpha": 0.01}
    params = ("alpha",)
    scalar = staticmethod(leaky_relu)
    gradient = simple_gradient("LeakyReluGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X, alpha=0.01):
        return (np.where(X >= 0, X, X * np.asarray(alpha, X.dtype)).astype(X.dtype),)


@register_op
class LeakyReluGradient(UnaryGradient):
    """dX = dY where Y > 0, else alpha * dY.  dX may alias dY."""

    args = {"alpha": 0.01}
    params = ("alpha",)
    scalar = staticmethod(leaky_relu_grad)

    @staticmethod
    def reference(Y, dY, alpha=0.01):
        return (np.where(Y > 0, dY, dY * alpha).astype(dY.dtype),)


@register_op
class Sigmoid(UnaryElementwise):
    """Y = 1 / (1 + exp(-X)), elementwise (overflow-free form).  Y may alias X."""

    float_only = True
    scalar = staticmethod(sigmoid)
    vector = staticmethod(sigmoid_vector)
    gradient = simple_gradient("SigmoidGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X):
        x = X.astype(np.float64)
        return ((0.5 * (1.0 + np.tanh(0.5 * x))).astype(X.dtype),)


@register_op
class SigmoidGradient(UnaryGradient):
    """dX = dY * Y * (1 - Y) (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(sigmoid_grad)

    @staticmethod
    def reference(Y, dY):
        return ((dY * Y * (1 - Y)).astype(dY.dtype),)


@register_op
class Tanh(UnaryElementwise):
    """Y = tanh(X), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(tanh)
    vector = staticmethod(tanh_vector)
    gradient = simple_gradient("TanhGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X):
        return (np.tanh(X).astype(X.dtype),)


@register_op
class TanhGradient(UnaryGradient):
    """dX = dY * (1 - Y²) (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(tanh_grad)

    @staticmethod
    def reference(Y, dY):
        return ((dY * (1 - Y * Y)).astype(dY.dtype),)


@register_op
class Elu(UnaryElementwise):
    """Y = X if X > 0 else alpha * (exp(X) - 1), elementwise.  Y may alias X.  ``alpha`` default 1.0."""

    args = {"alpha": 1.0}
    params = ("alpha",)
    float_only = True
    scalar = staticmethod(elu)
    vector = staticmethod(elu_vector)
    gradient = simple_gradient("EluGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X, alpha=1.0):
        x = X.astype(np.float64)
        return (np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(X.dtype),)


@register_op
class EluGradient(UnaryGradient):
    """dX = dY where Y > 0, else dY * (Y + alpha).  dX may alias dY."""

    args = {"alpha": 1.0}
    params = ("alpha",)
    scalar = staticmethod(elu_grad)

    @staticmethod
    def reference(Y, dY, alpha=1.0):
        return (np.where(Y > 0, dY, dY * (Y + alpha)).astype(dY.dtype),)


@numba.njit(cache=True)
def softmax_cpu(x, y):
    """Row softmax of 2-D C-contiguous x (N, D) into y (N, D); max subtracted for stability."""
    n, d = x.shape
    for i in range(n):
        m = x[i, 0]
        for j in range(1, d):
            if x[i, j] > m:
                m = x[i, j]
        total = 0.0
        for j in range(d):
            e = math.exp(x[i, j] - m)
            y[i, j] = e
            total += e
        inv = 1.0 / total
        for j in range(d):
            y[i, j] *= inv


def softmax_vector(x, y):
    """NumPy row softmax of (N, D) x into y: SIMD exp beats a numba loop's libm calls."""
    m = x.max(axis=1, keepdims=True)
    np.subtract(x, m, out=y)
    np.exp(y, out=y)
    y /= y.sum(axis=1, keepdims=True)


def softmax_2d_reference(x2):
    """Row softmax in float64 (the reference of Softmax and SoftmaxWithLoss)."""
    x = x2.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@register_op
class Softmax(Operator):
    """Y = exp(X - max) / sum(exp(X - max)) over X flattened to 2-D at ``axis`` (default 1).

    Caffe2 semantics: X of shape [a0..ak-1, ak..an-1] is viewed as
    (a0*...*ak-1, ak*...*an-1) and normalised along the second dimension — not per-axis
    like NumPy.  Y has X's shape and may alias X (in place).
    """

    inputs, outputs = ("input",), ("output",)
    inplace = {0: 0}
    args = {"axis": 1}
    cpu = SizeSwitch(softmax_cpu, softmax_vector)
    gradient = simple_gradient("SoftmaxGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        axis = schema.canonical_axis(args["axis"], max(len(shapes[0]), 1))
        schema.flatten_2d(shapes[0], axis)
        if not np.issubdtype(dtypes[0], np.floating):
            # Caffe2 registers Softmax for float only; an int output would silently hold 0s
            raise errors.ShapeError(f"Softmax needs a floating point input, got {np.dtype(dtypes[0]).name}")
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(input, axis=1):
        axis = axis + input.ndim if axis < 0 else axis
        n, d = schema.flatten_2d(input.shape, axis)
        return (softmax_2d_reference(input.reshape(n, d)).reshape(input.shape).astype(input.dtype),)

    def bind(self, inputs, outputs):
        x = inputs[0]
        axis = schema.canonical_axis(self.args["axis"], max(len(x.shape), 1))
        n, d = schema.flatten_2d(x.shape, axis)
        if n * d == 0:
            return _noop
        # NumPy's row reductions cost ~50 ns a row: short rows stay in the numba loop (UltraFace's
        # (4420, 2) scores: 0.04 ms in the loop, 0.23 ms through NumPy)
        size = n * d if d >= SOFTMAX_VECTOR_MIN_ROW else 0
        return functools.partial(choose(self.kernel, size), x.reshape(n, d), outputs[0].reshape(n, d))


SOFTMAX_VECTOR_MIN_ROW = 64


def _noop():
    pass


@numba.njit(cache=True)
def softmax_grad_cpu(y, dy, dx):
    """dx = y * (dy - sum(dy * y)) per row of 2-D (N, D) arrays."""
    n, d = y.shape
    for i in range(n):
        dot = 0.0
        for j in range(d):
            dot += dy[i, j] * y[i, j]
        for j in range(d):
            dx[i, j] = y[i, j] * (dy[i, j] - dot)


def softmax_grad_vector(y, dy, dx):
    """NumPy form of softmax_grad_cpu for large inputs."""
    dot = np.einsum("ij,ij->i", dy, y)[:, None]
    np.subtract(dy, dot, out=dx, casting="same_kind")
    dx *= y


@register_op
class SoftmaxGradient(Operator):
    """dX = Y * (dY - sum(dY * Y)) over the rows of Y and dY flattened to 2-D at ``axis``.

    dX may alias dY.
    """

    inputs, outputs = ("Y", "dY"), ("dX",)
    inplace = {1: 0}
    args = {"axis": 1}
    gradient = None
    cpu = SizeSwitch(softmax_grad_cpu, softmax_grad_vector)

    @staticmethod
    def infer(args, shapes, dtypes):
        if tuple(shapes[0]) != tuple(shapes[1]):
            raise errors.ShapeError(f"Y {tuple(shapes[0])} and dY {tuple(shapes[1])} must have the same shape")
        return [shapes[1]], [dtypes[1]]

    @staticmethod
    def reference(Y, dY, axis=1):
        axis = axis + Y.ndim if axis < 0 else axis
        n, d = schema.flatten_2d(Y.shape, axis)
        y, g = Y.reshape(n, d).astype(np.float64), dY.reshape(n, d).astype(np.float64)
        return ((y * (g - (g * y).sum(axis=1, keepdims=True))).reshape(Y.shape).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        y, dy = inputs
        axis = schema.canonical_axis(self.args["axis"], max(len(y.shape), 1))
        n, d = schema.flatten_2d(y.shape, axis)
        if n * d == 0:
            return _noop
        return functools.partial(choose(self.kernel, n * d), y.reshape(n, d), dy.reshape(n, d),
                                 outputs[0].reshape(n, d))
