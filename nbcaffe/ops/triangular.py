"""Trilu: the upper or lower triangle of the last two dims (ONNX Trilu; NumPy triu/tril).

Y[..., i, j] = X[..., i, j] where j - i >= k (upper) or j - i <= k (lower), else 0.  The op is
linear, so its gradient is Trilu of dY with the same arguments.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op


@numba.njit(cache=True)
def trilu_cpu(x, y, k, upper):
    """y[b, i, j] = x[b, i, j] inside the triangle, else 0 (x, y: (batch, rows, cols))."""
    batch, rows, cols = x.shape
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                keep = (j - i >= k) if upper else (j - i <= k)
                y[b, i, j] = x[b, i, j] if keep else x[b, i, j] * 0


def _view(shape):
    shape = tuple(int(d) for d in shape)
    batch = int(np.prod(shape[:-2], dtype=np.int64))
    return batch, shape[-2], shape[-1]


@register_op
class Trilu(Operator):
    """Y = the upper (``upper=1``, default) or lower triangle of X's last two dims, from the
    ``k``-th diagonal (default 0; positive = above the main diagonal); the rest is 0.  X has
    at least 2 dims.  Y may alias X.  Gradient: Trilu of dY (the same triangle)."""

    inputs, outputs = ("X",), ("Y",)
    inplace = {0: 0}
    args = {"upper": 1, "k": 0}
    cpu = staticmethod(trilu_cpu)
    gradient = simple_gradient("Trilu", [GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        if len(shapes[0]) < 2:
            raise errors.ShapeError(f"Trilu needs at least 2 dims, got {tuple(shapes[0])}")
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, upper=1, k=0):
        return ((np.triu(X, k) if upper else np.tril(X, k)).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        view = _view(x.shape)
        return functools.partial(self.kernel, x.reshape(view), y.reshape(view), int(self.args["k"]),
                                 bool(self.args["upper"]))
