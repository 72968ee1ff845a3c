"""Reciprocal and the error function, elementwise on floats, with their gradients:
Reciprocal (Y = 1 / X; ReciprocalGradient reads Y) and Erf (ErfGradient reads X).
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe.autograd import GI, GO, O, simple_gradient
from nbcaffe.ops._elementwise import UnaryElementwise, UnaryGradient
from nbcaffe.ops.elementwise_math import input_reading_gradient
from nbcaffe.registry import register_op

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def reciprocal(x):
    return 1.0 / x


def reciprocal_grad(y, dy):
    return -dy * y * y


def erf(x):
    return math.erf(x)


def erf_grad(x, dy):
    return _TWO_OVER_SQRT_PI * math.exp(-x * x) * dy


@register_op
class Reciprocal(UnaryElementwise):
    """Y = 1 / X, elementwise on floats (1/0 = inf).  Y may alias X."""

    float_only = True
    scalar = staticmethod(reciprocal)
    vector = staticmethod(lambda x, y: np.reciprocal(x, out=y))
    gradient = simple_gradient("ReciprocalGradient", [O(0), GO(0)], [GI(0)])

    @staticmethod
    def reference(X):
        with np.errstate(divide="ignore"):
            return (np.reciprocal(X),)


@register_op
class ReciprocalGradient(UnaryGradient):
    """dX = -dY * Y² (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(reciprocal_grad)

    @staticmethod
    def reference(Y, dY):
        return ((-dY * Y * Y).astype(dY.dtype),)


@register_op
class Erf(UnaryElementwise):
    """Y = erf(X) = 2/sqrt(pi) ∫₀ˣ exp(-t²) dt, elementwise on floats.  Y may alias X (but then
    no gradient: it reads X)."""

    float_only = True
    scalar = staticmethod(erf)
    gradient = input_reading_gradient("ErfGradient")

    @staticmethod
    def reference(X):
        return (np.vectorize(math.erf, otypes=[np.float64])(X).astype(X.dtype),)


@register_op
class ErfGradient(UnaryGradient):
    """dX = 2/sqrt(pi) * exp(-X²) * dY (reads X).  dX may alias dY."""

    inputs = ("X", "dY")
    scalar = staticmethod(erf_grad)

    @staticmethod
    def reference(X, dY):
        return ((_TWO_OVER_SQRT_PI * np.exp(-X.astype(np.float64) ** 2) * dY).astype(dY.dtype),)
