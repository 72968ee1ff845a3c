"""Fully connected layer: FC (Y = X · Wᵀ + b)."""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe import errors, schema, threads
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op


def fc_cpu(x2, w2, b, y2):
    """y2 (M, N) = x2 (M, K) · w2 (N, K)ᵀ + b (N); all C-contiguous, one dtype.

    The GEMM is NumPy's BLAS call (OpenBLAS sgemm/dgemm), split over nbcaffe's thread pool
    (``threads.matmul``): as fast as numba's ``np.dot`` in ``@njit`` (perf-anchors:
    0.90-1.0x) without making SciPy a dependency or paying a 0.7 s compile per dtype.
    """
    threads.matmul(x2, w2.T, y2)
    y2 += b


def fc_dims(args, x_shape, w_shape):
    """(M, K, N) of FC for these shapes; ShapeError naming the mismatch."""
    axis = schema.canonical_axis(args["axis"], max(len(x_shape), 1), "axis")
    axis_w = schema.canonical_axis(args["axis_w"], max(len(w_shape), 1), "axis_w")
    m, k = schema.flatten_2d(x_shape, axis)
    n, k_w = schema.flatten_2d(w_shape, axis_w)
    if k != k_w:
        raise errors.ShapeError(
            f"X {tuple(x_shape)} flattened at axis={axis} gives K={k} columns but W {tuple(w_shape)}"
            f" flattened at axis_w={axis_w} gives K={k_w}; W must be (N, K)")
    return axis, m, k, n


@register_op
class FC(Operator):
    """Y = X · Wᵀ + b: X flattened to (M, K) at ``axis`` (default 1), W to (N, K) at ``axis_w``
    (default 1), b of N elements; Y has shape X.shape[:axis] + (N,).

    All three inputs must share one floating dtype.
    """

    inputs, outputs = ("X", "W", "b"), ("Y",)
    args = {"axis": 1, "axis_w": 1}
    cpu = staticmethod(fc_cpu)
    gradient = simple_gradient("FCGradient", [I(0), I(1), GO(0)], [GI(1), GI(2), GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        axis, m, k, n = fc_dims(args, shapes[0], shapes[1])
        if schema.prod(shapes[2]) != n:
            raise errors.ShapeError(f"b has {schema.prod(shapes[2])} elements {tuple(shapes[2])} but W gives N={n}")
        if not (dtypes[0] == dtypes[1] == dtypes[2]):
            raise errors.ShapeError(
                f"X, W and b must share a dtype; got {[np.dtype(d).name for d in dtypes]}")
        return [tuple(shapes[0][:axis]) + (n,)], [dtypes[0]]

    @staticmethod
    def reference(X, W, b, axis=1, axis_w=1):
        axis = axis + X.ndim if axis < 0 else axis
        axis_w = axis_w + W.ndim if axis_w < 0 else axis_w
        m, k = schema.flatten_2d(X.shape, axis)
        n, _ = schema.flatten_2d(W.shape, axis_w)
        y = X.reshape(m, k).astype(np.float64) @ W.reshape(n, k).astype(np.float64).T + b.reshape(n)
        return (y.reshape(X.shape[:axis] + (n,)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, w, b = inputs
        axis, m, k, n = fc_dims(self.args, x.shape, w.shape)
        x2, w2, b1, y2 = x.reshape(m, k), w.reshape(n, k), b.reshape(n), outputs[0].reshape(m, n)
        if self.kernel is fc_cpu and 2 <= m <= FC_FEW_ROWS:
            return functools.partial(fc_few_rows_cpu, x2, w2, b1, y2, self.ctx.empty((n, m), x.dtype))
        return functools.partial(self.kernel, x2, w2, b1, y2)


# Up to this many rows of X, FC computes Yᵀ = W · Xᵀ (W's rows contiguous for BLAS) instead of
# X · Wᵀ: LeNet's 800->500 at 8 rows 0.23 -> 0.12 ms, MTCNN O-Net's 1152->256 0.15 -> 0.085 ms
# (one row: the same either way).
FC_FEW_ROWS = 16


def fc_few_rows_cpu(x2, w2, b, y2, yt):
    """fc_cpu for a few rows: yt (N, M) = w2 · x2ᵀ (split over the pool by rows of W), then
    y2 = ytᵀ + b."""
    threads.matmul(w2, x2.T, yt)
    np.add(yt.T, b, out=y2)


def fc_gradient_cpu(x2, w2, dy2, dw2, db, dx2):
    """dW (N, K) = dYᵀ · X; db (N) = column sums of dY; dX (M, K) = dY · W (BLAS calls);
    dx2 None skips dX (FCGradient with two outputs)."""
    threads.matmul(dy2.T, x2, dw2)
    np.sum(dy2, axis=0, out=db)
    if dx2 is not None:
        threads.matmul(dy2, w2, dx2)


@register_op
class FCGradient(Operator):
    """dW = dYᵀ · X, db = Σ_rows dY, dX = dY · W, with FC's ``axis``/``axis_w`` flattening;
    outputs come in Caffe2's order (dW, db, dX) and take the shapes of W, b and X."""

    inputs, outputs = ("X", "W", "dY"), ("dW", "db", "dX")
    num_outputs = (2, 3)
    args = {"axis": 1, "axis_w": 1}
    gradient = None
    cpu = staticmethod(fc_gradient_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        axis, m, k, n = fc_dims(args, shapes[0], shapes[1])
        if schema.prod(shapes[2]) != m * n:
            raise errors.ShapeError(f"dY {tuple(shapes[2])} does not match FC's output ({m}, {n})")
        return [shapes[1], (n,), shapes[0]], [dtypes[1], dtypes[1], dtypes[0]]

    @staticmethod
    def reference(X, W, dY, axis=1, axis_w=1):
        axis = axis + X.ndim if axis < 0 else axis
        axis_w = axis_w + W.ndim if axis_w < 0 else axis_w
        m, k = schema.flatten_2d(X.shape, axis)
        n, _ = schema.flatten_2d(W.shape, axis_w)
        x, w, dy = (a.astype(np.float64) for a in (X.reshape(m, k), W.reshape(n, k), dY.reshape(m, n)))
        return ((dy.T @ x).reshape(W.shape).astype(W.dtype), dy.sum(axis=0).astype(W.dtype),
                (dy @ w).reshape(X.shape).astype(X.dtype))

    def bind(self, inputs, outputs):
        x, w, dy = inputs
        axis, m, k, n = fc_dims(self.args, x.shape, w.shape)
        dx = outputs[2].reshape(m, k) if len(outputs) > 2 else None
        return functools.partial(self.kernel, x.reshape(m, k), w.reshape(n, k), dy.reshape(m, n),
                                 outputs[0].reshape(n, k), outputs[1].reshape(n), dx)
