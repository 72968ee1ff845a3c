"""Rounding and sign, elementwise: Floor, Ceil, Round (half to even), Sign.

No gradients (piecewise constant; Caffe2 registered none for Floor, Ceil and Sign).  The scalar
functions use only comparisons, an int truncation and arithmetic (helpers are
``register_jitable``, so the same code compiles for the CPU and for CUDA) and keep NaN,
infinities and large (already integral) values unchanged: numba's ``math.floor`` returns an
integer, which would overflow on 1e30 and fail on NaN.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from nbcaffe.ops._elementwise import UnaryElementwise
from nbcaffe.registry import register_op

# every float64 at or above 2**52 in magnitude is an integer (and so is every float32 above 2**23)
_INTEGRAL = 4503599627370496.0


@register_jitable
def _floor(x):
    if not abs(x) < _INTEGRAL:  # NaN, +-inf and values that are integers already
        return x
    t = float(int(x))  # x truncated toward zero (exact below 2**52)
    return t - 1.0 if x < t else t


def floor(x):
    return _floor(x)


def ceil(x):
    return -_floor(-x)


def round_half_even(x):
    if not abs(x) < _INTEGRAL:  # NaN, +-inf, already integral
        return x
    r = _floor(x)
    diff = x - r
    if diff > 0.5:
        return r + 1.0
    if diff < 0.5:
        return r
    return r + 1.0 if r - 2.0 * _floor(r * 0.5) != 0.0 else r


def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return x * 0  # 0 stays 0, NaN stays NaN


class _Rounding(UnaryElementwise):
    """Shared pieces: NumPy reference from ``numpy_fn``, no gradient."""

    gradient = None
    numpy_fn = None

    @classmethod
    def reference(cls, X):
        return (cls.numpy_fn(X).astype(X.dtype),)


@register_op
class Floor(_Rounding):
    """Y = floor(X), elementwise on floats.  Y may alias X.  No gradient."""

    float_only = True
    scalar = staticmethod(floor)
    numpy_fn = staticmethod(np.floor)


@register_op
class Ceil(_Rounding):
    """Y = ceil(X), elementwise on floats.  Y may alias X.  No gradient."""

    float_only = True
    scalar = staticmethod(ceil)
    numpy_fn = staticmethod(np.ceil)


@register_op
class Round(_Rounding):
    """Y = X rounded to the nearest integer, halves to even (2.5 -> 2, 3.5 -> 4), elementwise on
    floats.  Y may alias X.  No gradient."""

    float_only = True
    scalar = staticmethod(round_half_even)
    numpy_fn = staticmethod(np.round)


@register_op
class Sign(_Rounding):
    """Y = -1, 0 or 1 by the sign of X (NaN stays NaN), elementwise.  Y may alias X.  No gradient."""

    scalar = staticmethod(sign)
    numpy_fn = staticmethod(np.sign)
