"""Reductions: whole-tensor (SumElements, SumSqrElements), variadic extrema (Max, Min),
ArgMax/ArgMin and Summarize, with gradients where Caffe2 has them.  The axis reductions
(ReduceSum/Mean/Max/Min, ReduceFront*/ReduceBack*) are in reduce_axes.py."""

from __future__ import annotations

import functools
import math
import os

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, O, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import SizeSwitch, choose, flat
from nbcaffe.ops._reduce_util import MODE_SUM as MODE_SUM  # re-exported: linalg.py reads it here
from nbcaffe.ops._reduce_util import REDUCE_VECTOR_MIN_SIZE
from nbcaffe.ops._reduce_util import reduce_cpu as reduce_cpu  # re-exported: linalg.py reads it here
from nbcaffe.ops._reduce_util import reduce_plan as reduce_plan  # re-exported: linalg.py reads it here
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


# ------------------------------------------------------------------------ ArgMax / ArgMin


# A copy of _reduce_util._replaces for arg_cpu and summarize_cpu: they are cache=True, and numba's
# cache only notices edits to the kernel's own file, so a shared helper could go stale in it.
@numba.njit(cache=True)
def _replaces(v, current, take_max):
    """Whether v replaces ``current`` as the running max (min): larger (smaller), or NaN; a NaN
    already held is kept, so NaN propagates whatever the order (ints never compare unequal)."""
    return current == current and (v != v or (v > current if take_max else v < current))


@numba.njit(cache=True)
def arg_cpu(x, take_max, y):
    """y (outer, inner) int64 = index along n of the max (or min) of x (outer, n, inner): a later
    element wins only when strictly better, so ties keep the smallest index (Caffe2), and the
    first NaN wins (NumPy)."""
    outer, n, inner = x.shape
    for o in range(outer):
        xo = x[o]
        yo = y[o]
        for j in range(inner):
            yo[j] = 0
        for k in range(1, n):
            xk = xo[k]
            for j in range(inner):
                if _replaces(xk[j], xo[yo[j], j], take_max):
                    yo[j] = k


def arg_vector(x, take_max, y):
    """arg_cpu's contract with np.argmax / np.argmin (first occurrence, first NaN: the same rule)."""
    (np.argmax if take_max else np.argmin)(x, axis=1, out=y)


ARG_CPU = SizeSwitch(arg_cpu, arg_vector, REDUCE_VECTOR_MIN_SIZE)


def _arg_dims(args, shape):
    shape = tuple(shape)
    if not shape:
        raise errors.ShapeError("ArgMax/ArgMin need an input of rank >= 1, got a 0-d tensor")
    axis = schema.canonical_axis(args["axis"], len(shape), f"axis (X {shape})")
    if shape[axis] == 0:
        raise errors.ShapeError(f"axis {axis} of X {shape} is empty: no index to return")
    return axis, schema.prod(shape[:axis]), shape[axis], schema.prod(shape[axis + 1:])


class _Arg(Operator):
    inputs, outputs = ("X",), ("Indices",)
    args = {"axis": -1, "keepdims": True}
    gradient = None
    take_max = True
    cpu = ARG_CPU

    @staticmethod
    def infer(args, shapes, dtypes):
        axis, _, _, _ = _arg_dims(args, shapes[0])
        shape = tuple(shapes[0])
        out = shape[:axis] + ((1,) if args["keepdims"] else ()) + shape[axis + 1:]
        return [out], [np.dtype(np.int64)]

    def bind(self, inputs, outputs):
        x = inputs[0]
        _, outer, n, inner = _arg_dims(self.args, x.shape)
        return functools.partial(choose(self.kernel, x.size), x.reshape(outer, n, inner), type(self).take_max,
                                 outputs[0].reshape(outer, inner))


@register_op
class ArgMax(_Arg):
    """Indices = argmax of X along ``axis`` (default -1) as int64; ``keepdims`` (default 1) keeps
    that dim as 1.  Ties give the smallest index.  No gradient."""

    @staticmethod
    def reference(X, axis=-1, keepdims=True):
        return (np.argmax(X, axis=axis, keepdims=bool(keepdims)).astype(np.int64),)


@register_op
class ArgMin(_Arg):
    """Indices = argmin of X along ``axis`` (default -1) as int64; ``keepdims`` (default 1) keeps
    that dim as 1.  Ties give the smallest index.  No gradient."""

    take_max = False

    @staticmethod
    def reference(X, axis=-1, keepdims=True):
        return (np.argmin(X, axis=axis, keepdims=bool(keepdims)).astype(np.int64),)


# ------------------------------------------------------------------------ Summarize


@numba.njit(cache=True)
def summarize_cpu(x, out):
    """out[0:4] = min, max, mean and sample standard deviation (N - 1; 0 for one element) of
    flat x, two passes in float64 (NaN propagates)."""
    lo = x[0]
    hi = x[0]
    total = 0.0
    for i in range(x.size):
        v = x[i]
        if _replaces(v, lo, False):
            lo = v
        if _replaces(v, hi, True):
            hi = v
        total += v
    mean = total / x.size
    sq = 0.0
    for i in range(x.size):
        diff = x[i] - mean
        sq += diff * diff
    out[0] = lo
    out[1] = hi
    out[2] = mean
    out[3] = math.sqrt(sq / (x.size - 1)) if x.size > 1 else 0.0


def _summary_line(stats) -> str:
    # C++ ostream's default float format is %g with 6 significant digits
    return " ".join(f"{float(v):g}" for v in stats)


@register_op
class Summarize(Operator):
    """output = [min, max, mean, standard deviation] of all elements of data (sample standard
    deviation, N - 1, as Caffe2; 0 for one element), a 1-D tensor of 4 in data's dtype.

    The output is optional.  With ``to_file=1`` each run appends the line "min max mean std" to
    ``<workspace root folder>/<data blob name>.summary`` ('/' in the name becomes '#'); the file
    is truncated when the op first runs (Caffe2 truncated it when the op was created).  Float
    inputs only; the input may live on any device.  No gradient.
    """

    inputs, outputs = ("data",), ("output",)
    num_outputs = (0, 1)
    args = {"to_file": False}
    input_device = {0: "any"}
    gradient = None
    cpu = staticmethod(summarize_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        if np.dtype(dtypes[0]).kind != "f":
            raise errors.ShapeError(f"Summarize needs a floating point input, got {np.dtype(dtypes[0]).name}")
        if schema.prod(shapes[0]) == 0:
            raise errors.ShapeError(f"Summarize of an empty tensor {tuple(shapes[0])} is undefined")
        return [(4,)], [dtypes[0]]

    @staticmethod
    def reference(data, to_file=False):
        x = data.astype(np.float64).reshape(-1)
        std = x.std(ddof=1) if x.size > 1 else 0.0
        return (np.array([x.min(), x.max(), x.mean(), std], dtype=data.dtype),)

    def setup(self):
        self._file_started = False

    def summary_path(self):
        name = self.input_names[0].replace("/", "#")
        return os.path.join(self.ws.root_folder, name + ".summary")

    def bind(self, inputs, outputs):
        x = inputs[0]
        _, dtypes = self.output_spec(inputs)  # validates dtype and size
        out = outputs[0] if outputs else self.ctx.empty((4,), dtypes[0])
        path = self.summary_path() if self.args["to_file"] else None
        if path is not None and not self._file_started:
            open(path, "w").close()
            self._file_started = True
        on_device = self.ctx.owns(x)
        x_flat = x.reshape(x.size)
        host_stats = np.empty(4, dtypes[0])
        kernel = self.kernel

        def call():
            if on_device:
                kernel(x_flat, out)
                if path is not None:
                    stats = out if isinstance(out, np.ndarray) else out.copy_to_host()
            else:  # a host input of a CUDA op (or a device input of a CPU op): compute on the host
                host = x_flat if isinstance(x_flat, np.ndarray) else x_flat.copy_to_host()
                summarize_cpu(host, host_stats)
                if isinstance(out, np.ndarray):
                    out[:] = host_stats
                else:
                    out.copy_to_device(host_stats)
                stats = host_stats
            if path is not None:
                with open(path, "a") as handle:
                    handle.write(_summary_line(stats) + "\n")

        return call
