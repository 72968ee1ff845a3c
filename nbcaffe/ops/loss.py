"""Losses without a softmax: SquaredL2Distance (per-row half squared distance) and AveragedLoss
(mean of a tensor, the usual last op of a loss), with their gradient ops.  The cross-entropy
losses (SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy) are in cross_entropy.py."""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op


@numba.njit(cache=True)
def squared_l2_cpu(x, y, out):
    """out[i] = 0.5 * sum_j (x[i, j] - y[i, j])**2 for x, y (N, D)."""
    n, d = x.shape
    for i in range(n):
        total = 0.0
        for j in range(d):
            diff = x[i, j] - y[i, j]
            total += diff * diff
        out[i] = 0.5 * total


@register_op
class SquaredL2Distance(Operator):
    """Z[i] = 0.5 * ||X[i] - Y[i]||² over each row of X and Y (same shape; row = all dims but
    the first).  Z has one value per row."""

    inputs, outputs = ("X", "Y"), ("Z",)
    cpu = staticmethod(squared_l2_cpu)
    gradient = simple_gradient("SquaredL2DistanceGradient", [I(0), I(1), GO(0)], [GI(0), GI(1)])

    @staticmethod
    def infer(args, shapes, dtypes):
        x, y = tuple(shapes[0]), tuple(shapes[1])
        if x != y:
            raise errors.ShapeError(f"X {x} and Y {y} must have the same shape")
        if dtypes[0] != dtypes[1]:
            raise errors.ShapeError("X and Y must have the same dtype")
        return [(x[0] if x else 1,)], [dtypes[0]]

    @staticmethod
    def reference(X, Y):
        n = X.shape[0] if X.ndim else 1
        diff = (X.astype(np.float64) - Y.astype(np.float64)).reshape(n, -1)
        return ((0.5 * (diff * diff).sum(axis=1)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs
        n = x.shape[0] if x.shape else 1
        d = x.size // n if n else 0
        return functools.partial(self.kernel, x.reshape(n, d), y.reshape(n, d), outputs[0].reshape(n))


@numba.njit(cache=True, fastmath={"reassoc"})  # reassociation lets the sum vectorise; NaN still propagates
def averaged_loss_cpu(x, out):
    """out[0] = mean(x) for flat x (0 when x is empty)."""
    total = 0.0
    for i in range(x.size):
        total += x[i]
    out[0] = total / x.size if x.size else 0.0


@register_op
class AveragedLoss(Operator):
    """loss = mean(X) over all elements; a 0-d tensor."""

    inputs, outputs = ("X",), ("loss",)
    cpu = staticmethod(averaged_loss_cpu)
    gradient = simple_gradient("AveragedLossGradient", [I(0), GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [()], [dtypes[0]]

    @staticmethod
    def reference(X):
        return (np.asarray(X.astype(np.float64).mean() if X.size else 0.0, dtype=X.dtype),)

    def bind(self, inputs, outputs):
        x = inputs[0]
        return functools.partial(self.kernel, x.reshape(x.size if x.shape else 1), outputs[0].reshape(1))


# ----------------------------------------------------------------------------- gradients


@numba.njit(cache=True)
def squared_l2_grad_cpu(x, y, dd, dx, dy):
    """dx[i] = (x[i] - y[i]) * dd[i]; dy = -dx, for (N, D) rows."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            g = (x[i, j] - y[i, j]) * dd[i]
            dx[i, j] = g
            dy[i, j] = -g


@register_op
class SquaredL2DistanceGradient(Operator):
    """dX = (X - Y) * dDistance[i] per row, dY = -dX."""

    inputs, outputs = ("X", "Y", "dDistance"), ("dX", "dY")
    gradient = None
    cpu = staticmethod(squared_l2_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0], shapes[1]], [dtypes[0], dtypes[1]]

    @staticmethod
    def reference(X, Y, dDistance):
        n = X.shape[0] if X.ndim else 1
        diff = (X.astype(np.float64) - Y.astype(np.float64)).reshape(n, -1) * dDistance.reshape(n, 1)
        return diff.reshape(X.shape).astype(X.dtype), (-diff).reshape(Y.shape).astype(Y.dtype)

    def bind(self, inputs, outputs):
        x, y, dd = inputs
        n = x.shape[0] if x.shape else 1
        d = x.size // n if n else 0
        return functools.partial(self.kernel, x.reshape(n, d), y.reshape(n, d), dd.reshape(n),
                                 outputs[0].reshape(n, d), outputs[1].reshape(n, d))


@numba.njit(cache=True)
def averaged_loss_grad_cpu(dloss, dx):
    """dx[:] = dloss[0] / dx.size."""
    value = dloss[0] / dx.size if dx.size else 0.0
    for i in range(dx.size):
        dx[i] = value


@register_op
class AveragedLossGradient(Operator):
    """dX = d_loss / size(X) everywhere."""

    inputs, outputs = ("X", "d_loss"), ("dX",)
    gradient = None
    cpu = staticmethod(averaged_loss_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(X, d_loss):
        value = float(np.asarray(d_loss).reshape(-1)[0]) / X.size if X.size else 0.0
        return (np.full(X.shape, value, dtype=X.dtype),)

    def bind(self, inputs, outputs):
        dx = outputs[0]
        return functools.partial(self.kernel, inputs[1].reshape(1), dx.reshape(dx.size if dx.shape else 1))
