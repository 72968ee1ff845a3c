"""Trigonometric and hyperbolic functions, elementwise on floating tensors: Sin, Cos, Tan,
Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, and their gradient ops (Caffe2's
``<Type>Gradient(X, dY) -> dX``; Caffe2 had the first eight).

Each op is a scalar function compiled by the elementwise bases (``@njit`` loop here, CUDA in
nbcaffe/cuda/trigonometric.py), with NumPy's SIMD ufunc as the CPU form from 256 elements
(libm per element in the loop is much slower there, see nbcaffe/ops/_elementwise.py).
Outside the domain (Asin(2), Acosh(0), ...) the result is NaN, as in NumPy.
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe.ops._elementwise import UnaryElementwise, UnaryGradient
from nbcaffe.ops.elementwise_math import input_reading_gradient
from nbcaffe.registry import register_op

# NOTE: numba's math.asin/acos/acosh/atanh return NaN outside the domain (no exception) with
# the elementwise bases' error_model="numpy", matching NumPy.


def sin(x):
    return math.sin(x)


def sin_grad(x, dy):
    return dy * math.cos(x)

def cos(x):
    return math.cos(x)


def cos_grad(x, dy):
    return -dy * math.sin(x)

def tan(x):
    return math.tan(x)


def tan_grad(x, dy):
    return dy / (math.cos(x) * math.cos(x))

def asin(x):
    return math.asin(x)


def asin_grad(x, dy):
    return dy / math.sqrt(1.0 - x * x)

def acos(x):
    return math.acos(x)


def acos_grad(x, dy):
    return -dy / math.sqrt(1.0 - x * x)

def atan(x):
    return math.atan(x)


def atan_grad(x, dy):
    return dy / (1.0 + x * x)

def sinh(x):
    return math.sinh(x)


def sinh_grad(x, dy):
    return dy * math.cosh(x)

def cosh(x):
    return math.cosh(x)


def cosh_grad(x, dy):
    return dy * math.sinh(x)

def asinh(x):
    return math.asinh(x)


def asinh_grad(x, dy):
    return dy / math.sqrt(x * x + 1.0)

def acosh(x):
    return math.acosh(x)


def acosh_grad(x, dy):
    return dy / math.sqrt(x * x - 1.0)

def atanh(x):
    return math.atanh(x)


def atanh_grad(x, dy):
    return dy / (1.0 - x * x)


class _Trig(UnaryElementwise):
    """Shared pieces: float-only, NumPy reference and vector form from ``numpy_fn``."""

    float_only = True
    numpy_fn = None

    @classmethod
    def reference(cls, X):
        with np.errstate(all="ignore"):
            return (cls.numpy_fn(X).astype(X.dtype),)


class _TrigGradient(UnaryGradient):
    """Shared pieces of the gradient ops: inputs (X, dY)."""

    inputs = ("X", "dY")


@register_op
class Sin(_Trig):
    """Y = sin(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(sin)
    numpy_fn = staticmethod(np.sin)
    vector = staticmethod(lambda x, y: np.sin(x, out=y))
    gradient = input_reading_gradient("SinGradient")


@register_op
class SinGradient(_TrigGradient):
    """dX = dY * cos(X).  dX may alias dY."""

    scalar = staticmethod(sin_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY * np.cos(X)).astype(dY.dtype),)


@register_op
class Cos(_Trig):
    """Y = cos(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(cos)
    numpy_fn = staticmethod(np.cos)
    vector = staticmethod(lambda x, y: np.cos(x, out=y))
    gradient = input_reading_gradient("CosGradient")


@register_op
class CosGradient(_TrigGradient):
    """dX = -dY * sin(X).  dX may alias dY."""

    scalar = staticmethod(cos_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((-dY * np.sin(X)).astype(dY.dtype),)


@register_op
class Tan(_Trig):
    """Y = tan(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(tan)
    numpy_fn = staticmethod(np.tan)
    vector = staticmethod(lambda x, y: np.tan(x, out=y))
    gradient = input_reading_gradient("TanGradient")


@register_op
class TanGradient(_TrigGradient):
    """dX = dY / cos²(X).  dX may alias dY."""

    scalar = staticmethod(tan_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / np.cos(X) ** 2).astype(dY.dtype),)


@register_op
class Asin(_Trig):
    """Y = arcsin(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(asin)
    numpy_fn = staticmethod(np.arcsin)
    vector = staticmethod(lambda x, y: np.arcsin(x, out=y))
    gradient = input_reading_gradient("AsinGradient")


@register_op
class AsinGradient(_TrigGradient):
    """dX = dY / sqrt(1 - X²).  dX may alias dY."""

    scalar = staticmethod(asin_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / np.sqrt(1 - X * X)).astype(dY.dtype),)


@register_op
class Acos(_Trig):
    """Y = arccos(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(acos)
    numpy_fn = staticmethod(np.arccos)
    vector = staticmethod(lambda x, y: np.arccos(x, out=y))
    gradient = input_reading_gradient("AcosGradient")


@register_op
class AcosGradient(_TrigGradient):
    """dX = -dY / sqrt(1 - X²).  dX may alias dY."""

    scalar = staticmethod(acos_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((-dY / np.sqrt(1 - X * X)).astype(dY.dtype),)


@register_op
class Atan(_Trig):
    """Y = arctan(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(atan)
    numpy_fn = staticmethod(np.arctan)
    vector = staticmethod(lambda x, y: np.arctan(x, out=y))
    gradient = input_reading_gradient("AtanGradient")


@register_op
class AtanGradient(_TrigGradient):
    """dX = dY / (1 + X²).  dX may alias dY."""

    scalar = staticmethod(atan_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / (1 + X * X)).astype(dY.dtype),)


@register_op
class Sinh(_Trig):
    """Y = sinh(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(sinh)
    numpy_fn = staticmethod(np.sinh)
    vector = staticmethod(lambda x, y: np.sinh(x, out=y))
    gradient = input_reading_gradient("SinhGradient")


@register_op
class SinhGradient(_TrigGradient):
    """dX = dY * cosh(X).  dX may alias dY."""

    scalar = staticmethod(sinh_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY * np.cosh(X)).astype(dY.dtype),)


@register_op
class Cosh(_Trig):
    """Y = cosh(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(cosh)
    numpy_fn = staticmethod(np.cosh)
    vector = staticmethod(lambda x, y: np.cosh(x, out=y))
    gradient = input_reading_gradient("CoshGradient")


@register_op
class CoshGradient(_TrigGradient):
    """dX = dY * sinh(X).  dX may alias dY."""

    scalar = staticmethod(cosh_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY * np.sinh(X)).astype(dY.dtype),)


@register_op
class Asinh(_Trig):
    """Y = arsinh(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(asinh)
    numpy_fn = staticmethod(np.arcsinh)
    vector = staticmethod(lambda x, y: np.arcsinh(x, out=y))
    gradient = input_reading_gradient("AsinhGradient")


@register_op
class AsinhGradient(_TrigGradient):
    """dX = dY / sqrt(X² + 1).  dX may alias dY."""

    scalar = staticmethod(asinh_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / np.sqrt(X * X + 1)).astype(dY.dtype),)


@register_op
class Acosh(_Trig):
    """Y = arcosh(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(acosh)
    numpy_fn = staticmethod(np.arccosh)
    vector = staticmethod(lambda x, y: np.arccosh(x, out=y))
    gradient = input_reading_gradient("AcoshGradient")


@register_op
class AcoshGradient(_TrigGradient):
    """dX = dY / sqrt(X² - 1).  dX may alias dY."""

    scalar = staticmethod(acosh_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / np.sqrt(X * X - 1)).astype(dY.dtype),)


@register_op
class Atanh(_Trig):
    """Y = artanh(X), elementwise.  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(atanh)
    numpy_fn = staticmethod(np.arctanh)
    vector = staticmethod(lambda x, y: np.arctanh(x, out=y))
    gradient = input_reading_gradient("AtanhGradient")


@register_op
class AtanhGradient(_TrigGradient):
    """dX = dY / (1 - X²).  dX may alias dY."""

    scalar = staticmethod(atanh_grad)

    @staticmethod
    def reference(X, dY):
        with np.errstate(all="ignore"):
            return ((dY / (1 - X * X)).astype(dY.dtype),)
