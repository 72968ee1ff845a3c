"""CumSum: running sums along one axis (inclusive or exclusive, forward or reversed), with its
gradient (the running sum of dY in the opposite direction)."""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import schema
from nbcaffe.autograd import GI, GO, GradientContext
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op


@numba.njit(cache=True)
def cumsum_cpu(x, y, exclusive, reverse):
    """y[o, j, i] = Σ x[o, t, i] over t <= j (t < j when exclusive; t >= j / t > j when
    reversed); x, y: (outer, n, inner).  Sums run in the input dtype, in order."""
    outer, n, inner = x.shape
    for o in range(outer):
        for i in range(inner):
            total = x[o, 0, i] * 0
            for s in range(n):
                j = n - 1 - s if reverse else s
                if exclusive:
                    y[o, j, i] = total
                    total += x[o, j, i]
                else:
                    total += x[o, j, i]
                    y[o, j, i] = total


def _view(shape, axis):
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1, 1
    axis = schema.canonical_axis(axis, len(shape))
    return schema.prod(shape[:axis]), shape[axis], schema.prod(shape[axis + 1:])


def cumsum_gradient(op, g_output):
    """dX = CumSum of dY along the same axis in the other direction (same ``exclusive``)."""
    ctx = GradientContext(op, g_output)
    reverse = next((a.i for a in op.arg if a.name == "reverse"), 0)
    ctx.add("CumSum", [GO(0)], [GI(0)], reverse=int(not reverse))
    return ctx.result()


@register_op
class CumSum(Operator):
    """Y = cumulative sum of X along ``axis`` (default 0, negative counts from the end);
    ``exclusive=1`` leaves out the element itself (starting from 0), ``reverse=1`` sums from
    the end.  Y may alias X.  Gradient: CumSum of dY with the direction reversed."""

    inputs, outputs = ("X",), ("Y",)
    inplace = {0: 0}
    args = {"axis": 0, "exclusive": 0, "reverse": 0}
    cpu = staticmethod(cumsum_cpu)
    gradient = staticmethod(cumsum_gradient)

    @staticmethod
    def infer(args, shapes, dtypes):
        if shapes[0]:
            schema.canonical_axis(args["axis"], len(shapes[0]))
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, axis=0, exclusive=0, reverse=0):
        if X.ndim == 0:
            return (X * 0 if exclusive else X.copy(),)
        x = np.flip(X, axis) if reverse else X
        y = np.cumsum(x, axis=axis, dtype=X.dtype)
        if exclusive:
            y = y - x
        return ((np.flip(y, axis) if reverse else y).astype(X.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        view = _view(x.shape, self.args["axis"])
        if x.size == 0:
            return _noop
        return functools.partial(self.kernel, x.reshape(view), y.reshape(view), bool(self.args["exclusive"]),
                                 bool(self.args["reverse"]))


def _noop():
    pass
