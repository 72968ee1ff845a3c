"""GatherElements: per-element indexing along one axis (torch.gather, ONNX GatherElements),
and its gradient (a scatter-add).

OUTPUT[p] = DATA[p with its ``axis`` coordinate replaced by INDICES[p]] for every position p of
INDICES; DATA and INDICES have the same rank and INDICES is no larger than DATA in every dim.
Negative indices count from the end.  The kernels check every index (``@njit`` does no bounds
checks) and report the first bad position, which the op turns into a ShapeError naming it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import c_strides
from nbcaffe.registry import register_op


@numba.njit(cache=True)
def gather_elements_cpu(data, idx, out, shape, data_strides, axis, dim):
    """out[p] = data[offset of p with coordinate ``axis`` = idx[p]] (flat arrays; ``shape`` is
    INDICES' shape).  Returns -1, or the flat position of the first index outside [-dim, dim)."""
    ndim = shape.size
    index = np.zeros(ndim, np.int64)
    for p in range(idx.size):
        j = idx[p]
        if j < 0:
            j += dim
        if j < 0 or j >= dim:
            return p
        src = 0
        for d in range(ndim):
            src += (j if d == axis else index[d]) * data_strides[d]
        out[p] = data[src]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            if index[d] < shape[d]:
                break
            index[d] = 0
            d -= 1
    return -1


@numba.njit(cache=True)
def gather_elements_grad_cpu(dy, idx, dx, shape, data_strides, axis, dim):
    """dx = 0, then dx[source of p] += dy[p] (same addressing as the forward kernel).  Returns
    -1 or the first bad index position."""
    for k in range(dx.size):
        dx[k] = 0
    ndim = shape.size
    index = np.zeros(ndim, np.int64)
    for p in range(idx.size):
        j = idx[p]
        if j < 0:
            j += dim
        if j < 0 or j >= dim:
            return p
        src = 0
        for d in range(ndim):
            src += (j if d == axis else index[d]) * data_strides[d]
        dx[src] += dy[p]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            if index[d] < shape[d]:
                break
            index[d] = 0
            d -= 1
    return -1


def _check(data_shape, idx_shape, axis, idx_dtype, where):
    data_shape, idx_shape = tuple(int(d) for d in data_shape), tuple(int(d) for d in idx_shape)
    if len(data_shape) != len(idx_shape) or not data_shape:
        raise errors.ShapeError(f"{where}: DATA {data_shape} and INDICES {idx_shape} must have the same rank (>= 1)")
    axis = schema.canonical_axis(axis, len(data_shape))
    for d, (n, m) in enumerate(zip(data_shape, idx_shape)):
        if d != axis and m > n:
            raise errors.ShapeError(f"{where}: INDICES {idx_shape} is larger than DATA {data_shape} in dim {d}")
    if idx_dtype is not None and not np.issubdtype(idx_dtype, np.integer):
        raise errors.ShapeError(f"{where}: INDICES must be int32 or int64, got {np.dtype(idx_dtype).name}")
    return axis


class _Base(Operator):
    def call(self, kernel, first, idx, second, data_shape):
        axis = _check(data_shape, idx.shape, self.args["axis"], idx.dtype, self.type)
        shape = np.asarray(tuple(idx.shape), np.int64)
        strides = np.asarray(c_strides(data_shape), np.int64)
        plan = (self.ctx.from_host(shape), self.ctx.from_host(strides))
        run = functools.partial(kernel, first.reshape(first.size), idx.reshape(idx.size),
                                second.reshape(second.size), *plan, axis, int(data_shape[axis]))
        idx_shape = tuple(idx.shape)

        def checked():
            bad = run()
            if bad >= 0:
                position = [int(v) for v in np.unravel_index(bad, idx_shape)]
                raise errors.ShapeError(f"INDICES{position} is outside [-{data_shape[axis]}, {data_shape[axis]})"
                                        f" (axis {axis} of DATA {tuple(data_shape)})")

        return checked


@register_op
class GatherElements(_Base):
    """OUTPUT = DATA gathered element by element along ``axis`` (default 0) at INDICES (int32/
    int64, same rank as DATA, negative counts from the end); OUTPUT has INDICES' shape.  An
    index out of range raises naming its position.  Gradient: GatherElementsGradient."""

    inputs, outputs = ("DATA", "INDICES"), ("OUTPUT",)
    args = {"axis": 0}
    cpu = staticmethod(gather_elements_cpu)
    gradient = simple_gradient("GatherElementsGradient", [GO(0), I(1), I(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        _check(shapes[0], shapes[1], args["axis"], dtypes[1], "GatherElements")
        return [tuple(shapes[1])], [dtypes[0]]

    @staticmethod
    def reference(DATA, INDICES, axis=0):
        axis = axis + DATA.ndim if axis < 0 else axis
        idx = np.where(INDICES < 0, INDICES + DATA.shape[axis], INDICES)
        return (np.take_along_axis(DATA, idx.astype(np.int64), axis=axis),)

    def bind(self, inputs, outputs):
        data, idx = inputs
        return self.call(self.kernel, data, idx, outputs[0], tuple(data.shape))


@register_op
class GatherElementsGradient(_Base):
    """dDATA = zeros shaped like DATA with dOUTPUT added at the positions GatherElements read
    (inputs dOUTPUT, INDICES, DATA; DATA is read for its shape)."""

    inputs, outputs = ("dOUTPUT", "INDICES", "DATA"), ("dDATA",)
    input_device = {2: "any"}
    args = {"axis": 0}
    cpu = staticmethod(gather_elements_grad_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        _check(shapes[2], shapes[1], args["axis"], dtypes[1], "GatherElementsGradient")
        return [tuple(shapes[2])], [dtypes[0]]

    @staticmethod
    def reference(dOUTPUT, INDICES, DATA, axis=0):
        axis = axis + DATA.ndim if axis < 0 else axis
        idx = np.where(INDICES < 0, INDICES + DATA.shape[axis], INDICES).astype(np.int64)
        dx = np.zeros(DATA.shape, np.float64)
        for p in np.ndindex(*INDICES.shape):
            q = list(p)
            q[axis] = idx[p]
            dx[tuple(q)] += dOUTPUT[p]
        return (dx.astype(dOUTPUT.dtype),)

    def bind(self, inputs, outputs):
        dy, idx, data = inputs
        return self.call(self.kernel, dy, idx, outputs[0], tuple(data.shape))
