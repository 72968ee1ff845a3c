"""Whole-tensor reductions and variadic extrema: SumElements, SumSqrElements, Max, Min
(with gradients).  The axis reductions (ReduceSum, ReduceMean, ...) join this family with
the CNN operator catalogue."""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, GradientContext, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import flat
from nbcaffe.registry import register_op


@numba.njit(cache=True, fastmath={"reassoc"})  # reassociation lets the sums vectorise; NaN still propagates
def sum_elements_cpu(x, average, out):
    """out[0] = sum(x) (or mean when average) over flat x."""
    total = 0.0
    for i in range(x.size):
        total += x[i]
    out[0] = total / x.size if average and x.size else total


@numba.njit(cache=True, fastmath={"reassoc"})
def sum_sqr_elements_cpu(x, average, out):
    """out[0] = sum(x²) (or its mean when average) over flat x."""
    total = 0.0
    for i in range(x.size):
        total += x[i] * x[i]
    out[0] = total / x.size if average and x.size else total


class _WholeReduction(Operator):
    inputs, outputs = ("X",), ("sum",)
    args = {"average": False}

    @staticmethod
    def infer(args, shapes, dtypes):
        return [()], [dtypes[0]]

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, flat(inputs[0]), bool(self.args["average"]), outputs[0].reshape(1))


@register_op
class SumElements(_WholeReduction):
    """sum = Σ X (or the mean with ``average=1``) over all elements; a 0-d tensor."""

    cpu = staticmethod(sum_elements_cpu)
    gradient = simple_gradient("SumElementsGradient", [I(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X, average=False):
        total = X.astype(np.float64).sum()
        return (np.asarray(total / X.size if average and X.size else total, dtype=X.dtype),)


@register_op
class SumSqrElements(_WholeReduction):
    """sum = Σ X² (or its mean with ``average=1``) over all elements; a 0-d tensor."""

    cpu = staticmethod(sum_sqr_elements_cpu)
    gradient = simple_gradient("SumSqrElementsGradient", [I(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X, average=False):
        total = (X.astype(np.float64) ** 2).sum()
        return (np.asarray(total / X.size if average and X.size else total, dtype=X.dtype),)


@numba.njit(cache=True)
def sum_elements_grad_cpu(x, dy, scale_by_x, average, dx):
    """dx = dy[0] * (2x if scale_by_x else 1) / (N if average else 1)."""
    g = dy[0] / x.size if average and x.size else dy[0]
    for i in range(x.size):
        dx[i] = 2.0 * x[i] * g if scale_by_x else g


class _WholeReductionGradient(Operator):
    inputs, outputs = ("X", "dY"), ("dX",)
    args = {"average": False}
    gradient = None
    cpu = staticmethod(sum_elements_grad_cpu)
    squared = False

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, flat(inputs[0]), inputs[1].reshape(1), type(self).squared,
                                 bool(self.args["average"]), flat(outputs[0]))


@register_op
class SumElementsGradient(_WholeReductionGradient):
    """dX = dY (divided by the element count with ``average=1``) everywhere."""

    @staticmethod
    def reference(X, dY, average=False):
        g = float(np.asarray(dY).reshape(-1)[0]) / (X.size if average and X.size else 1)
        return (np.full(X.shape, g, dtype=X.dtype),)


@register_op
class SumSqrElementsGradient(_WholeReductionGradient):
    """dX = 2 X dY (divided by the element count with ``average=1``)."""

    squared = True

    @staticmethod
    def reference(X, dY, average=False):
        g = float(np.asarray(dY).reshape(-1)[0]) / (X.size if average and X.size else 1)
        return ((2 * X.astype(np.float64) * g).astype(X.dtype),)


@numba.njit(cache=True)
def extreme_cpu(xs, take_max, out):
    """out = elementwise max (or min) over a tuple of flat arrays (out may alias xs[0])."""
    first = xs[0]
    for i in range(out.size):
        out[i] = first[i]
    for k in range(1, len(xs)):
        x = xs[k]
        for i in range(out.size):
            if (x[i] > out[i]) if take_max else (x[i] < out[i]):
                out[i] = x[i]


def _extreme_gradient(grad_type):
    def maker(op, g_output):
        ctx = GradientContext(op, g_output)
        ctx.add(grad_type, [O(0), GO(0)] + [I(i) for i in range(len(op.input))],
                [GI(i) for i in range(len(op.input))])
        return ctx.result()

    return staticmethod(maker)


class _Extreme(Operator):
    inputs, outputs = ("X0", "X1, ..."), ("Y",)
    num_inputs = (1, None)
    inplace = {0: 0}
    cpu = staticmethod(extreme_cpu)
    take_max = True

    @staticmethod
    def infer(args, shapes, dtypes):
        for i, shape in enumerate(shapes):
            if tuple(shape) != tuple(shapes[0]) or dtypes[i] != dtypes[0]:
                raise errors.ShapeError(f"input {i} {tuple(shape)} {np.dtype(dtypes[i]).name} differs from input 0"
                                        f" {tuple(shapes[0])} {np.dtype(dtypes[0]).name}")
        return [shapes[0]], [dtypes[0]]

    def bind(self, inputs, outputs):
        out = flat(outputs[0])
        xs = tuple(flat(x) for x in inputs)
        if any(x is out for x in xs[1:]):
            raise errors.SchemaError(f"{self.type}: only input 0 may be the output blob")
        return functools.partial(self.kernel, xs, type(self).take_max, out)


@register_op
class Max(_Extreme):
    """Y = elementwise maximum over inputs of one shape; Y may alias X0."""

    gradient = _extreme_gradient("MaxGradient")

    @staticmethod
    def reference(*inputs):
        return (functools.reduce(np.maximum, inputs).astype(inputs[0].dtype),)


@register_op
class Min(_Extreme):
    """Y = elementwise minimum over inputs of one shape; Y may alias X0."""

    take_max = False
    gradient = _extreme_gradient("MinGradient")

    @staticmethod
    def reference(*inputs):
        return (functools.reduce(np.minimum, inputs).astype(inputs[0].dtype),)


@numba.njit(cache=True)
def extreme_grad_cpu(y, dy, x, dx):
    """dx = dy where x == y (x attained the extreme), else 0 (flat arrays)."""
    for i in range(y.size):
        dx[i] = dy[i] if x[i] == y[i] else 0.0


class _ExtremeGradient(Operator):
    inputs, outputs = ("Y", "dY", "X0, ..."), ("dX0, ...",)
    num_inputs = (3, None)
    num_outputs = (1, None)
    gradient = None
    cpu = staticmethod(extreme_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[2 + i] for i in range(len(shapes) - 2)], [dtypes[2 + i] for i in range(len(shapes) - 2)]

    @staticmethod
    def reference(Y, dY, *xs):
        return tuple(np.where(x == Y, dY, 0).astype(dY.dtype) for x in xs)

    def bind(self, inputs, outputs):
        y, dy = flat(inputs[0]), flat(inputs[1])
        calls = [functools.partial(self.kernel, y, dy, flat(x), flat(dx)) for x, dx in zip(inputs[2:], outputs)]

        def call():
            for c in calls:
                c()

        return call


@register_op
class MaxGradient(_ExtremeGradient):
    """dX_i = dY where X_i equals the maximum Y (ties all receive it), else 0."""


@register_op
class MinGradient(_ExtremeGradient):
    """dX_i = dY where X_i equals the minimum Y (ties all receive it), else 0."""
