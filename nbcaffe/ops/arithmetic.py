"""Elementwise arithmetic: Add, Sub, Mul, Div, Sum, Scale, Exp, Log, Sqrt, Abs, Negative,
Sqr, Pow, Clip.

Scalar functions here are plain Python over one or two values; the bases in
``_elementwise`` compile them with ``@njit`` and nbcaffe/cuda/arithmetic.py with
``@cuda.jit(device=True)``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, pass_through_gradient, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._elementwise import (
    BinaryElementwise,
    SizeSwitch,
    UnaryElementwise,
    binary_kernels,
    choose,
    flat,
    unary_kernel,
)
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    return a / b


def scale(x, s):
    return x * s


def exp(x):
    return math.exp(x)


def log(x):
    return math.log(x)


def sqrt(x):
    return math.sqrt(x)


def absolute(x):
    return abs(x)


def negative(x):
    return -x


def sqr(x):
    return x * x


def power(x, e):
    return x ** e


def clip(x, lo, hi):
    # NOTE: comparisons (not min/max) so NaN passes through unchanged, as in Caffe2.  The max
    # with lo is applied before the min with hi (Caffe2: cwiseMax(min).cwiseMin(max)), so with
    # min > max every output is max.
    y = lo if x < lo else x
    return hi if y > hi else y


def _binary_reference(fn):
    def reference(A, B, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        if broadcast and A.shape != B.shape:
            if axis_str:
                axis = order.index(axis_str)
            pre, n, post = schema.legacy_broadcast_sizes(A.shape, B.shape, axis)
            out = fn(A.reshape(pre, n, post), B.reshape(1, n, 1)).reshape(A.shape)
        else:
            out = fn(A, B)
        return (np.asarray(out).astype(A.dtype),)

    return staticmethod(reference)


@register_op
class Add(BinaryElementwise):
    """C = A + B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style).

    C may alias A or B.
    """

    scalar = staticmethod(add)
    reference = _binary_reference(np.add)


@register_op
class Sub(BinaryElementwise):
    """C = A - B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(sub)
    reference = _binary_reference(np.subtract)


@register_op
class Mul(BinaryElementwise):
    """C = A * B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(mul)
    reference = _binary_reference(np.multiply)


@register_op
class Div(BinaryElementwise):
    """C = A / B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(div)
    reference = _binary_reference(np.divide)


class SumKernels:
    """``pair(a, b, out)``: out = a + b; ``accumulate(out, x)``: out += x; flat, equal sizes."""

    __slots__ = ("pair", "accumulate", "copy")

    def __init__(self, pair, accumulate, copy):
        self.pair = pair
        self.accumulate = accumulate
        self.copy = copy


@numba.njit(cache=True)
def _sum_pair(a, b, out):
    for i in range(out.size):
        out[i] = a[i] + b[i]


@numba.njit(cache=True)
def _sum_accumulate(out, x):
    for i in range(out.size):
        out[i] += x[i]


@numba.njit(cache=True)
def _copy(x, y):
    for i in range(x.size):
        y[i] = x[i]


@register_op
class Sum(Operator):
    """sum = X0 + X1 + ... + Xn-1, elementwise over inputs of identical shape and dtype.

    Runs in place on input 0 (``Sum([a, b], [a])``); one input is a copy.
    """

    inputs, outputs = ("X0", "X1, ..."), ("sum",)
    num_inputs = (1, None)
    inplace = {0: 0}
    cpu = SumKernels(_sum_pair, _sum_accumulate, _copy)
    gradient = staticmethod(pass_through_gradient)  # every input's gradient *is* dY (no op)

    @staticmethod
    def infer(args, shapes, dtypes):
        for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
            if tuple(shape) != tuple(shapes[0]) or dtype != dtypes[0]:
                raise errors.ShapeError(
                    f"Sum needs inputs of one shape and dtype: input 0 is {tuple(shapes[0])}"
                    f" {np.dtype(dtypes[0]).name}, input {i} is {tuple(shape)} {np.dtype(dtype).name}")
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(*inputs):
        total = inputs[0].copy()
        for x in inputs[1:]:
            total = total + x
        return (total.astype(inputs[0].dtype),)

    def bind(self, inputs, outputs):
        k = self.kernel
        out = flat(outputs[0])
        xs = [flat(x) for x in inputs]
        if len(xs) == 1:
            return functools.partial(k.copy, xs[0], out)
        # A later input may be the output (Sum([a, b], [b])): add it first so it is read before
        # being overwritten.
        first_alias = [i for i, x in enumerate(inputs) if x is outputs[0]]
        if first_alias and first_alias[0] != 0:
            j = first_alias[0]
            xs[0], xs[j] = xs[j], xs[0]
        pair = functools.partial(k.pair, xs[0], xs[1], out)
        rest = [functools.partial(k.accumulate, out, x) for x in xs[2:]]
        if not rest:
            return pair

        def call():
            pair()
            for step in rest:
                step()

        return call


class _Unary(UnaryElementwise):
    """Shared reference: ``numpy_fn`` applied to X (and the params), cast to X's dtype."""

    numpy_fn = None

    @classmethod
    def reference(cls, X, **args):
        params = [args[name] for name in cls.params]
        with np.errstate(all="ignore"):
            return (np.asarray(cls.numpy_fn(X, *params)).astype(X.dtype),)


@register_op
class Scale(_Unary):
    """Y = scale * X, elementwise.  Y may alias X.  Argument ``scale`` (float, default 1.0)."""

    args = {"scale": 1.0}
    params = ("scale",)
    scalar = staticmethod(scale)
    gradient = simple_gradient("Scale", [GO(0)], [GI(0)])
    numpy_fn = staticmethod(lambda x, s: x * np.asarray(s, dtype=x.dtype))


@register_op
class Exp(_Unary):
    """Y = exp(X), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(exp)
    numpy_fn = staticmethod(np.exp)
    vector = staticmethod(lambda x, y: np.exp(x, out=y))


@register_op
class Log(_Unary):
    """Y = log(X) (natural logarithm), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(log)
    numpy_fn = staticmethod(np.log)
    vector = staticmethod(lambda x, y: np.log(x, out=y))


@register_op
class Sqrt(_Unary):
    """Y = sqrt(X), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(sqrt)
    numpy_fn = staticmethod(np.sqrt)


@register_op
class Abs(_Unary):
    """Y = |X|, elementwise.  Y may alias X."""

    scalar = staticmethod(absolute)
    numpy_fn = staticmethod(np.abs)


@register_op
class Negative(_Unary):
    """Y = -X, elementwise.  Y may alias X."""

    scalar = staticmethod(negative)
    numpy_fn = staticmethod(np.negative)


@register_op
class Sqr(_Unary):
    """Y = X * X, elementwise.  Y may alias X."""

    scalar = staticmethod(sqr)
    numpy_fn = staticmethod(np.square)


def _clip_reference(x, lo, hi):
    """NumPy form of ``clip``: max with lo first, then min with hi; NaN passes through."""
    y = np.where(x < lo, lo, x)
    return np.where(y > hi, hi, y)


@register_op
class Clip(_Unary):
    """Y = min(max(X, min), max), elementwise.  Y may alias X.

    Arguments ``min`` and ``max`` (float; default: no bound).  NaN stays NaN.
    """

    args = {"min": -math.inf, "max": math.inf}
    params = ("min", "max")
    scalar = staticmethod(clip)
    numpy_fn = staticmethod(_clip_reference)


class PowKernels:
    """Pow needs the unary kernel (``exponent`` argument) and the binary pair (2nd input)."""

    __slots__ = ("unary", "binary")

    def __init__(self, unary, binary):
        self.unary = unary
        self.binary = binary


@register_op
class Pow(BinaryElementwise):
    """Y = X ** exponent, elementwise; the exponent is the ``exponent`` argument or input 1.

    With two inputs the exponent broadcasts like the other binary ops (``broadcast``/``axis``
    or NumPy-style).  Y may alias X.  Exactly one of ``exponent`` and input 1 must be given.
    """

    inputs, outputs = ("X", "exponent"), ("Y",)
    num_inputs = (1, 2)
    args = {**BinaryElementwise.args, "exponent": Arg("float", None, "exponent when input 1 is absent")}
    scalar = staticmethod(power)

    @classmethod
    def build_cpu_kernel(cls):
        vector = SizeSwitch(unary_kernel(power, 1), lambda x, y, e: np.power(x, x.dtype.type(e), out=y))
        return PowKernels(vector, binary_kernels(power))

    def setup(self):
        has_arg = "exponent" in self.args.given
        if has_arg == (len(self.input_names) == 2):
            raise errors.ArgumentError(
                f"{self.where()}: give the exponent either as argument 'exponent' or as input 1, not"
                f" {'both' if has_arg else 'neither'}")

    @classmethod
    def infer(cls, args, shapes, dtypes):
        if len(shapes) == 1:
            return [shapes[0]], [dtypes[0]]
        return BinaryElementwise.infer.__func__(cls, args, shapes, dtypes)

    @staticmethod
    def reference(X, exponent=None, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        if isinstance(exponent, np.ndarray):
            return _binary_reference(np.power).__func__(X, exponent, broadcast, axis, axis_str, order)
        return (np.power(X, np.asarray(exponent, dtype=X.dtype)).astype(X.dtype),)

    def reference_kwargs(self):
        kwargs = super().reference_kwargs()
        if len(self.input_names) == 2:
            kwargs.pop("exponent", None)
        return kwargs

    def bind(self, inputs, outputs):
        if len(inputs) == 1:
            x = flat(inputs[0])
            return functools.partial(choose(self.kernel.unary, x.size), x, flat(outputs[0]),
                                     float(self.args["exponent"]))
        return self.bind_binary(self.kernel.binary, inputs, outputs)
