"""Elementwise arithmetic: Add, Sub, Mul, Div (broadcasting), Sum (n-ary, same shapes), and
their gradient ops.  The unary functions (Scale, Exp, Log, Sqrt, Abs, Negative, Sqr, Pow,
Clip) are in elementwise_math.py.

Scalar functions here are plain Python over one or two values; the bases in
``_elementwise`` compile them with ``@njit`` and nbcaffe/cuda/arithmetic.py with
``@cuda.jit(device=True)``.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import pass_through_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._binary_ops import _binary_reference, binary_gradient
from nbcaffe.ops._elementwise import BinaryElementwise, BinaryGradient, flat
from nbcaffe.registry import register_op


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    return a / b


# ---------------------------------------------------------------- gradient scalars
# Partials of the binary ops at one position of C, as f(dC, C, A, B); the gradient kernels
# sum them over the dims along which A or B was broadcast.


def add_grad_a(dc, c, a, b):
    return dc


def add_grad_b(dc, c, a, b):
    return dc


def sub_grad_b(dc, c, a, b):
    return -dc


def mul_grad_a(dc, c, a, b):
    return dc * b


def mul_grad_b(dc, c, a, b):
    return dc * a


def div_grad_a(dc, c, a, b):
    return dc / b


def div_grad_b(dc, c, a, b):
    # -dC * A / B² written with C = A / B (Caffe2's form; A may have been overwritten in place)
    return -dc * c / b


@register_op
class Add(BinaryElementwise):
    """C = A + B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style).

    C may alias A or B.
    """

    scalar = staticmethod(add)
    reference = _binary_reference(np.add)
    gradient = binary_gradient("AddGradient")


@register_op
class Sub(BinaryElementwise):
    """C = A - B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(sub)
    reference = _binary_reference(np.subtract)
    gradient = binary_gradient("SubGradient")


@register_op
class Mul(BinaryElementwise):
    """C = A * B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(mul)
    reference = _binary_reference(np.multiply)
    gradient = binary_gradient("MulGradient", reads=(0, 1))


@register_op
class Div(BinaryElementwise):
    """C = A / B, elementwise with broadcasting (legacy ``broadcast=1, axis`` or NumPy-style)."""

    scalar = staticmethod(div)
    reference = _binary_reference(np.divide)
    gradient = binary_gradient("DivGradient", reads=(1,), with_output=True)


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


# ============================================================================ gradient ops


@register_op
class AddGradient(BinaryGradient):
    """dA = dC and dB = dC, each summed over the dims along which its input was broadcast.

    Inputs dC, A, B (A and B lend only their shapes); outputs dA, dB with A's and B's shapes.
    Arguments as Add's: ``broadcast`` (legacy form, with ``axis``/``axis_str``/``order``) or
    NumPy broadcasting (default).
    """

    grad_a = staticmethod(add_grad_a)
    grad_b = staticmethod(add_grad_b)
    numpy_partials = staticmethod(lambda dc, c, a, b: (dc, dc))


@register_op
class SubGradient(BinaryGradient):
    """dA = dC and dB = -dC, each summed over the dims along which its input was broadcast.

    Inputs dC, A, B (A and B lend only their shapes); arguments as Sub's.
    """

    grad_a = staticmethod(add_grad_a)
    grad_b = staticmethod(sub_grad_b)
    numpy_partials = staticmethod(lambda dc, c, a, b: (dc, -dc))


@register_op
class MulGradient(BinaryGradient):
    """dA = dC * B and dB = dC * A, each summed over the dims along which its input was
    broadcast.  Inputs dC, A, B; arguments as Mul's."""

    grad_a = staticmethod(mul_grad_a)
    grad_b = staticmethod(mul_grad_b)
    numpy_partials = staticmethod(lambda dc, c, a, b: (dc * b, dc * a))


@register_op
class DivGradient(BinaryGradient):
    """dA = dC / B and dB = -dC * C / B (= -dC * A / B²), each summed over the dims along which
    its input was broadcast.

    Inputs dC, A, B, C (Caffe2's order; A lends only its shape, so an in-place ``Div(A, B) ->
    A`` still differentiates); arguments as Div's.
    """

    inputs = ("dC", "A", "B", "C")
    grad_a = staticmethod(div_grad_a)
    grad_b = staticmethod(div_grad_b)
    numpy_partials = staticmethod(lambda dc, c, a, b: (dc / b, -dc * c / b))
