"""TopK: the k largest (or smallest) entries along an axis with their indices, and its
gradient (dValues scattered back to the chosen positions).

Order: best first; among equal values the lower index comes first (ONNX's rule), so the
result is deterministic.  The CPU kernel sorts each line with a stable merge sort (largest:
the reversed line sorted ascending, then read backwards, which keeps equal values in index
order); the CUDA kernel selects k times per line (one thread per line).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op


@numba.njit(cache=True)
def topk_cpu(x, values, indices, largest):
    """x (outer, n, inner) -> values, indices (outer, k, inner), best first, ties by index."""
    outer, n, inner = x.shape
    k = values.shape[1]
    line = np.empty(n, x.dtype)
    for o in range(outer):
        for i in range(inner):
            if largest:
                for t in range(n):
                    line[t] = x[o, n - 1 - t, i]
                order = np.argsort(line, kind="mergesort")
                for t in range(k):
                    j = n - 1 - order[n - 1 - t]
                    values[o, t, i] = x[o, j, i]
                    indices[o, t, i] = j
            else:
                for t in range(n):
                    line[t] = x[o, t, i]
                order = np.argsort(line, kind="mergesort")
                for t in range(k):
                    values[o, t, i] = x[o, order[t], i]
                    indices[o, t, i] = order[t]


@numba.njit(cache=True)
def topk_grad_cpu(dvalues, indices, dx):
    """dx = 0, then dx[o, indices[o, t, i], i] = dvalues[o, t, i]."""
    outer, k, inner = dvalues.shape
    for o in range(outer):
        for j in range(dx.shape[1]):
            for i in range(inner):
                dx[o, j, i] = 0
        for t in range(k):
            for i in range(inner):
                dx[o, indices[o, t, i], i] = dvalues[o, t, i]


def _view(shape, axis, where="TopK"):
    shape = tuple(int(d) for d in shape)
    if not shape:
        raise errors.ShapeError(f"{where}: X must have at least 1 dim")
    axis = schema.canonical_axis(axis, len(shape))
    return axis, (schema.prod(shape[:axis]), shape[axis], schema.prod(shape[axis + 1:]))


@register_op
class TopK(Operator):
    """Values, Indices = the ``k`` largest entries of X along ``axis`` (default -1) and their
    positions (int64), best first; ``largest=0`` takes the smallest.  Equal values keep index
    order.  Gradient: TopKGradient (dValues written back at Indices, 0 elsewhere)."""

    inputs, outputs = ("X",), ("Values", "Indices")
    args = {"k": 1, "axis": -1, "largest": 1}
    cpu = staticmethod(topk_cpu)
    gradient = simple_gradient("TopKGradient", [GO(0), O(1), I(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        axis, (_outer, n, _inner) = _view(shapes[0], args["axis"])
        k = args["k"]
        if not 0 <= k <= n:
            raise errors.ShapeError(f"TopK: k={k} is outside [0, {n}] for X {tuple(shapes[0])} along axis {axis}")
        out = list(shapes[0])
        out[axis] = k
        return [tuple(out), tuple(out)], [dtypes[0], np.dtype(np.int64)]

    @staticmethod
    def reference(X, k=1, axis=-1, largest=1):
        axis = axis + X.ndim if axis < 0 else axis
        keys = -X.astype(np.float64) if largest else X.astype(np.float64)
        order = np.argsort(keys, axis=axis, kind="stable")
        idx = np.take(order, np.arange(k), axis=axis)
        return np.take_along_axis(X, idx, axis=axis), idx.astype(np.int64)

    def bind(self, inputs, outputs):
        x = inputs[0]
        values, indices = outputs
        _axis, view = _view(x.shape, self.args["axis"], self.type)
        if values.size == 0:
            return _noop
        k_view = (view[0], int(self.args["k"]), view[2])
        return functools.partial(self.kernel, x.reshape(view), values.reshape(k_view), indices.reshape(k_view),
                                 bool(self.args["largest"]))


def _noop():
    pass


@register_op
class TopKGradient(Operator):
    """dX = zeros shaped like X with dValues written at Indices along ``axis`` (inputs dValues,
    Indices, X; X is read for its shape)."""

    inputs, outputs = ("dValues", "Indices", "X"), ("dX",)
    input_device = {2: "any"}
    args = {"k": 1, "axis": -1, "largest": 1}
    cpu = staticmethod(topk_grad_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        if tuple(shapes[0]) != tuple(shapes[1]):
            raise errors.ShapeError(f"TopKGradient: dValues {tuple(shapes[0])} and Indices {tuple(shapes[1])} differ")
        return [tuple(shapes[2])], [dtypes[0]]

    @staticmethod
    def reference(dValues, Indices, X, k=1, axis=-1, largest=1):
        axis = axis + X.ndim if axis < 0 else axis
        dx = np.zeros(X.shape, dValues.dtype)
        np.put_along_axis(dx, Indices, dValues, axis=axis)
        return (dx,)

    def bind(self, inputs, outputs):
        dvalues, indices, x = inputs
        _axis, view = _view(x.shape, self.args["axis"], self.type)
        k_view = (view[0], int(dvalues.shape[_axis]) if dvalues.shape else 0, view[2])
        return functools.partial(self.kernel, dvalues.reshape(k_view), indices.reshape(k_view),
                                 outputs[0].reshape(view))
