"""Boolean logic and selection: And, Or, Xor, Not (bool tensors, Caffe2's names) and
Where(C, X, Y) with its gradient.

And/Or/Xor broadcast like Add.  Where broadcasts all three inputs NumPy-style; its kernel walks
the output with one odometer that keeps an offset per operand (stride 0 along broadcast dims).
WhereGradient sums dOut into dX where C holds and into dY elsewhere, reduced over the dims along
which X or Y were broadcast; the CPU kernel accumulates in output order (deterministic).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import (
    BinaryElementwise,
    UnaryElementwise,
    apply_binary_reference,
    contiguous_strides,
    flat,
    sum_to_shape,
)
from nbcaffe.registry import register_op


def logical_and(a, b):
    return a and b


def logical_or(a, b):
    return a or b


def logical_xor(a, b):
    return a != b


def logical_not(x):
    return not x


def _require_bool(name, dtypes):
    for k, d in enumerate(dtypes):
        if np.dtype(d) != np.bool_:
            raise errors.ShapeError(f"{name} needs bool inputs, input {k} is {np.dtype(d).name} (add a Cast op)")


class _Logic(BinaryElementwise):
    """C = A op B on bool tensors with broadcasting (as Add)."""

    output_dtype = np.bool_
    gradient = None
    numpy_fn = None

    @classmethod
    def infer(cls, args, shapes, dtypes):
        _require_bool(cls.__name__, dtypes)
        return super().infer(args, shapes, dtypes)

    @classmethod
    def reference(cls, A, B, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        return (apply_binary_reference(cls.numpy_fn, A, B, broadcast, axis, axis_str, order),)


@register_op
class And(_Logic):
    """C = A and B elementwise (bool tensors, broadcasting as Add).  No gradient."""

    scalar = staticmethod(logical_and)
    numpy_fn = staticmethod(np.logical_and)


@register_op
class Or(_Logic):
    """C = A or B elementwise (bool tensors, broadcasting as Add).  No gradient."""

    scalar = staticmethod(logical_or)
    numpy_fn = staticmethod(np.logical_or)


@register_op
class Xor(_Logic):
    """C = A xor B elementwise (bool tensors, broadcasting as Add).  No gradient."""

    scalar = staticmethod(logical_xor)
    numpy_fn = staticmethod(np.logical_xor)


@register_op
class Not(UnaryElementwise):
    """Y = not X elementwise (bool tensor).  Y may alias X.  No gradient."""

    scalar = staticmethod(logical_not)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        _require_bool("Not", dtypes)
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(X):
        return (np.logical_not(X),)


# ----------------------------------------------------------------------------- Where


def broadcast_strides(out_shape, shape) -> np.ndarray:
    """Element strides of a C-contiguous ``shape`` read at every index of ``out_shape``
    (right-aligned; 0 along broadcast dims), as int64."""
    ndim = len(out_shape)
    shape = (1,) * (ndim - len(shape)) + tuple(shape)
    full = contiguous_strides(shape)
    return np.array([0 if shape[d] == 1 and out_shape[d] != 1 else full[d] for d in range(ndim)], np.int64)


@numba.njit(cache=True)
def where_cpu(c, x, y, out, shape, sc, sx, sy):
    """out[i] = x[.] if c[.] else y[.] over flat C-order out of ``shape`` (operand strides sc/sx/sy)."""
    ndim = shape.size
    index = np.zeros(ndim, np.int64)
    oc = 0
    ox = 0
    oy = 0
    for i in range(out.size):
        out[i] = x[ox] if c[oc] else y[oy]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            oc += sc[d]
            ox += sx[d]
            oy += sy[d]
            if index[d] < shape[d]:
                break
            oc -= sc[d] * shape[d]
            ox -= sx[d] * shape[d]
            oy -= sy[d] * shape[d]
            index[d] = 0
            d -= 1


@numba.njit(cache=True)
def where_grad_cpu(c, dout, dx, dy, shape, sc, sx, sy):
    """dx, dy = 0; then dx[.] += dout[i] where c[.], else dy[.] += dout[i] (flat C-order dout)."""
    for k in range(dx.size):
        dx[k] = 0
    for k in range(dy.size):
        dy[k] = 0
    ndim = shape.size
    index = np.zeros(ndim, np.int64)
    oc = 0
    ox = 0
    oy = 0
    for i in range(dout.size):
        if c[oc]:
            dx[ox] += dout[i]
        else:
            dy[oy] += dout[i]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            oc += sc[d]
            ox += sx[d]
            oy += sy[d]
            if index[d] < shape[d]:
                break
            oc -= sc[d] * shape[d]
            ox -= sx[d] * shape[d]
            oy -= sy[d] * shape[d]
            index[d] = 0
            d -= 1


def _where_shape(shapes, dtypes):
    if np.dtype(dtypes[0]) != np.bool_:
        raise errors.ShapeError(f"Where: condition must be bool, got {np.dtype(dtypes[0]).name}")
    if np.dtype(dtypes[1]) != np.dtype(dtypes[2]):
        raise errors.ShapeError(f"Where: X is {np.dtype(dtypes[1]).name} but Y is {np.dtype(dtypes[2]).name}")
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes[:3])))
    except ValueError:
        raise errors.ShapeError(f"Where: shapes C {tuple(shapes[0])}, X {tuple(shapes[1])}, Y {tuple(shapes[2])}"
                                f" do not broadcast") from None


def _plan(ctx, out_shape, *shapes):
    shape = tuple(out_shape) if out_shape else (1,)
    arrays = [np.asarray(shape, np.int64)] + [broadcast_strides(shape, s) for s in shapes]
    return tuple(ctx.from_host(a) for a in arrays)


@register_op
class Where(Operator):
    """output = X where C else Y, elementwise; C (bool), X and Y broadcast NumPy-style.

    X and Y must share a dtype.  Gradient: WhereGradient (dX, dY) for X and Y; C gets none.
    """

    inputs, outputs = ("C", "X", "Y"), ("output",)
    cpu = staticmethod(where_cpu)
    gradient = simple_gradient("WhereGradient", [I(0), GO(0), I(1), I(2)], [GI(1), GI(2)])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [_where_shape(shapes, dtypes)], [dtypes[1]]

    @staticmethod
    def reference(C, X, Y):
        return (np.where(C, X, Y).astype(X.dtype),)

    def bind(self, inputs, outputs):
        c, x, y = inputs
        out = outputs[0]
        if out.size == 0:
            return _noop
        plan = _plan(self.ctx, tuple(out.shape), c.shape, x.shape, y.shape)
        return functools.partial(self.kernel, flat(c), flat(x), flat(y), flat(out), *plan)


def _noop():
    pass


@register_op
class WhereGradient(Operator):
    """dX = Σ dOut where C, dY = Σ dOut where not C, each summed over the dims along which X
    (resp. Y) was broadcast.  Inputs C, dOut, X, Y (X and Y are read for their shapes)."""

    inputs, outputs = ("C", "dOut", "X", "Y"), ("dX", "dY")
    input_device = {2: "any", 3: "any"}
    cpu = staticmethod(where_grad_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        out = _where_shape([shapes[0], shapes[2], shapes[3]], [dtypes[0], dtypes[2], dtypes[3]])
        if tuple(shapes[1]) != out:
            raise errors.ShapeError(
                f"WhereGradient: dOut {tuple(shapes[1])} must have the forward output's shape {out}")
        return [tuple(shapes[2]), tuple(shapes[3])], [dtypes[1], dtypes[1]]

    @staticmethod
    def reference(C, dOut, X, Y):
        zero = np.zeros_like(dOut)
        dx = sum_to_shape(np.where(np.broadcast_to(C, dOut.shape), dOut, zero), X.shape)
        dy = sum_to_shape(np.where(np.broadcast_to(C, dOut.shape), zero, dOut), Y.shape)
        return dx.astype(dOut.dtype), dy.astype(dOut.dtype)

    def bind(self, inputs, outputs):
        c, dout, x, y = inputs
        dx, dy = outputs
        plan = _plan(self.ctx, tuple(dout.shape), c.shape, x.shape, y.shape)
        return functools.partial(self.kernel, flat(c), flat(dout), flat(dx), flat(dy), *plan)
