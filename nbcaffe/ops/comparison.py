"""Comparisons and float predicates with bool outputs: EQ, NE, LT, LE, GT, GE (Caffe2's
names), IsNaN, IsInf.

The binary comparisons broadcast like Add (NumPy rules, or Caffe2's legacy ``broadcast=1,
axis``) and need inputs of one dtype.  NaN compares unequal to everything (NE is True).
None has a gradient (piecewise constant outputs).
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe import errors
from nbcaffe.ops._elementwise import BinaryElementwise, UnaryElementwise, apply_binary_reference
from nbcaffe.registry import register_op


def eq(a, b):
    return a == b


def ne(a, b):
    return a != b


def lt(a, b):
    return a < b


def le(a, b):
    return a <= b


def gt(a, b):
    return a > b


def ge(a, b):
    return a >= b


def is_nan(x):
    return x != x


def is_inf(x, negative, positive):
    # negative/positive arrive as 0.0/1.0 floats (the elementwise bases pass float params)
    return (x == math.inf and positive != 0.0) or (x == -math.inf and negative != 0.0)


class _Compare(BinaryElementwise):
    """C = compare(A, B) as bool; shared reference."""

    outputs = ("C",)
    inplace = {}
    output_dtype = np.bool_
    gradient = None
    numpy_fn = None

    @classmethod
    def reference(cls, A, B, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        c = apply_binary_reference(cls.numpy_fn, A, B, broadcast, axis, axis_str, order)
        return (np.asarray(c, dtype=np.bool_),)


@register_op
class EQ(_Compare):
    """C = (A == B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(eq)
    numpy_fn = staticmethod(np.equal)


@register_op
class NE(_Compare):
    """C = (A != B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(ne)
    numpy_fn = staticmethod(np.not_equal)


@register_op
class LT(_Compare):
    """C = (A < B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(lt)
    numpy_fn = staticmethod(np.less)


@register_op
class LE(_Compare):
    """C = (A <= B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(le)
    numpy_fn = staticmethod(np.less_equal)


@register_op
class GT(_Compare):
    """C = (A > B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(gt)
    numpy_fn = staticmethod(np.greater)


@register_op
class GE(_Compare):
    """C = (A >= B) elementwise as bool, with broadcasting (as Add).  No gradient."""

    scalar = staticmethod(ge)
    numpy_fn = staticmethod(np.greater_equal)


class _Predicate(UnaryElementwise):
    """Y = predicate(X) as bool for a floating X."""

    inplace = {}
    gradient = None

    @classmethod
    def infer(cls, args, shapes, dtypes):
        if not np.issubdtype(dtypes[0], np.floating):
            raise errors.ShapeError(f"{cls.__name__} needs a floating point input, got {np.dtype(dtypes[0]).name}")
        return [shapes[0]], [np.dtype(np.bool_)]


@register_op
class IsNaN(_Predicate):
    """Y = isnan(X) elementwise as bool (X floating).  No gradient."""

    scalar = staticmethod(is_nan)

    @staticmethod
    def reference(X):
        return (np.isnan(X),)


@register_op
class IsInf(_Predicate):
    """Y = X is +inf (when ``detect_positive``, default 1) or -inf (when ``detect_negative``,
    default 1), elementwise as bool (X floating).  No gradient."""

    args = {"detect_negative": 1, "detect_positive": 1}
    params = ("detect_negative", "detect_positive")
    scalar = staticmethod(is_inf)

    @staticmethod
    def reference(X, detect_negative=1, detect_positive=1):
        return (((X == np.inf) & bool(detect_positive)) | ((X == -np.inf) & bool(detect_negative)),)
