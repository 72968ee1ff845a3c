"""More activation functions, elementwise, with gradients: Selu, HardSigmoid, Softsign,
ThresholdedRelu, Celu, HardSwish, Mish, Gelu (exact or ``fast_gelu`` tanh form), Swish
(x * sigmoid(alpha * x)), Shrink.

Caffe2 names and arguments where Caffe2 had the op (Selu's ``alpha``/``scale``,
HardSigmoid's ``alpha``/``beta``, ThresholdedRelu's ``alpha``, Gelu's ``fast_gelu``).
Gradient ops take (X, dY) -- except Selu and HardSigmoid, which read Y as in Caffe2.  Shared
scalar helpers are ``register_jitable`` so that both the ``@njit`` loops and the CUDA kernels
can call them.
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from nbcaffe.autograd import GI, GO, O, simple_gradient
from nbcaffe.ops._elementwise import UnaryElementwise, UnaryGradient
from nbcaffe.ops.elementwise_math import input_reading_gradient
from nbcaffe.registry import register_op

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


@register_jitable
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@register_jitable
def _softplus(z):
    return math.log1p(math.exp(-abs(z))) + max(z, 0.0)


def selu(x, alpha, scale):
    return scale * x if x > 0 else scale * alpha * math.expm1(x)


def selu_grad(y, dy, alpha, scale):
    return dy * scale if y > 0 else dy * (y + alpha * scale)


def hard_sigmoid(x, alpha, beta):
    return min(1.0, max(0.0, alpha * x + beta))


def hard_sigmoid_grad(y, dy, alpha, beta):
    return dy * alpha if 0.0 < y < 1.0 else dy * 0.0


def softsign(x):
    return x / (1.0 + abs(x))


def softsign_grad(x, dy):
    d = 1.0 + abs(x)
    return dy / (d * d)


def thresholded_relu(x, alpha):
    return x if x > alpha else x * 0.0


def thresholded_relu_grad(x, dy, alpha):
    return dy if x > alpha else dy * 0.0


def celu(x, alpha):
    return x if x > 0 else alpha * math.expm1(x / alpha)


def celu_grad(x, dy, alpha):
    return dy if x > 0 else dy * math.exp(x / alpha)


def hard_swish(x):
    return x * min(1.0, max(0.0, x / 6.0 + 0.5))


def hard_swish_grad(x, dy):
    if x < -3.0:
        return dy * 0.0
    if x > 3.0:
        return dy
    return dy * (x / 3.0 + 0.5)


def mish(x):
    return x * math.tanh(_softplus(x))


def mish_grad(x, dy):
    t = math.tanh(_softplus(x))
    return dy * (t + x * (1.0 - t * t) * _sigmoid(x))


def gelu(x, fast):
    if fast != 0.0:
        return 0.5 * x * (1.0 + math.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + math.erf(x * _INV_SQRT_2))


def gelu_grad(x, dy, fast):
    if fast != 0.0:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        t = math.tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
    cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT_2))
    pdf = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dy * (cdf + x * pdf)


def swish(x, alpha):
    return x * _sigmoid(alpha * x)


def swish_grad(x, dy, alpha):
    s = _sigmoid(alpha * x)
    return dy * (s + alpha * x * s * (1.0 - s))


def shrink(x, lambd, bias):
    if x < -lambd:
        return x + bias
    if x > lambd:
        return x - bias
    return x * 0


def shrink_grad(x, dy, lambd, bias):
    return dy if (x < -lambd or x > lambd) else dy * 0.0


# ----------------------------------------------------------------------------- NumPy references


def _np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _np_softplus(z):
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


def _np_erf(z):
    return np.vectorize(math.erf, otypes=[np.float64])(z)


class _Act(UnaryElementwise):
    """Shared pieces: float-only; reference computed in float64 from ``numpy_fn``."""

    float_only = True
    numpy_fn = None

    @classmethod
    def reference(cls, X, **args):
        params = [float(args.get(p, cls.args[p] if not hasattr(cls.args[p], "default") else cls.args[p].default))
                  for p in cls.params]
        with np.errstate(all="ignore"):
            return (cls.numpy_fn(X.astype(np.float64), *params).astype(X.dtype),)


class _ActGradient(UnaryGradient):
    """Shared pieces: reference computed in float64 from ``numpy_fn(x, dy, *params)``."""

    inputs = ("X", "dY")
    numpy_fn = None

    @classmethod
    def reference(cls, X, dY, **args):
        params = [float(args.get(p, cls.args[p] if not hasattr(cls.args[p], "default") else cls.args[p].default))
                  for p in cls.params]
        with np.errstate(all="ignore"):
            return (cls.numpy_fn(X.astype(np.float64), dY.astype(np.float64), *params).astype(dY.dtype),)


@register_op
class Selu(_Act):
    """Y = scale * X for X > 0, else scale * alpha * (exp(X) - 1); ``alpha`` 1.6732632,
    ``scale`` 1.0507010 (Caffe2's defaults).  Y may alias X."""

    args = {"alpha": SELU_ALPHA, "scale": SELU_SCALE}
    params = ("alpha", "scale")
    scalar = staticmethod(selu)
    numpy_fn = staticmethod(lambda x, a, s: np.where(x > 0, s * x, s * a * np.expm1(np.minimum(x, 0))))
    gradient = simple_gradient("SeluGradient", [O(0), GO(0)], [GI(0)])


@register_op
class SeluGradient(_ActGradient):
    """dX = dY * scale where Y > 0, else dY * (Y + alpha * scale) (reads Y).  dX may alias dY."""

    inputs = ("Y", "dY")
    args = dict(Selu.args)
    params = ("alpha", "scale")
    scalar = staticmethod(selu_grad)
    numpy_fn = staticmethod(lambda y, dy, a, s: np.where(y > 0, dy * s, dy * (y + a * s)))


@register_op
class HardSigmoid(_Act):
    """Y = max(0, min(1, alpha * X + beta)); ``alpha`` 0.2, ``beta`` 0.5.  Y may alias X."""

    args = {"alpha": 0.2, "beta": 0.5}
    params = ("alpha", "beta")
    scalar = staticmethod(hard_sigmoid)
    numpy_fn = staticmethod(lambda x, a, b: np.clip(a * x + b, 0, 1))
    gradient = simple_gradient("HardSigmoidGradient", [O(0), GO(0)], [GI(0)])


@register_op
class HardSigmoidGradient(_ActGradient):
    """dX = alpha * dY where 0 < Y < 1, else 0 (reads Y).  dX may alias dY."""

    inputs = ("Y", "dY")
    args = dict(HardSigmoid.args)
    params = ("alpha", "beta")
    scalar = staticmethod(hard_sigmoid_grad)
    numpy_fn = staticmethod(lambda y, dy, a, b: np.where((y > 0) & (y < 1), dy * a, 0.0))


@register_op
class Softsign(_Act):
    """Y = X / (1 + |X|).  Y may alias X (but then no gradient: it reads X)."""

    scalar = staticmethod(softsign)
    numpy_fn = staticmethod(lambda x: x / (1 + np.abs(x)))
    gradient = input_reading_gradient("SoftsignGradient")


@register_op
class SoftsignGradient(_ActGradient):
    """dX = dY / (1 + |X|)².  dX may alias dY."""

    scalar = staticmethod(softsign_grad)
    numpy_fn = staticmethod(lambda x, dy: dy / (1 + np.abs(x)) ** 2)


@register_op
class ThresholdedRelu(_Act):
    """Y = X where X > alpha, else 0; ``alpha`` 1.0.  Y may alias X (but then no gradient)."""

    args = {"alpha": 1.0}
    params = ("alpha",)
    scalar = staticmethod(thresholded_relu)
    numpy_fn = staticmethod(lambda x, a: np.where(x > a, x, 0.0))
    gradient = input_reading_gradient("ThresholdedReluGradient")


@register_op
class ThresholdedReluGradient(_ActGradient):
    """dX = dY where X > alpha, else 0.  dX may alias dY."""

    args = dict(ThresholdedRelu.args)
    params = ("alpha",)
    scalar = staticmethod(thresholded_relu_grad)
    numpy_fn = staticmethod(lambda x, dy, a: np.where(x > a, dy, 0.0))


@register_op
class Celu(_Act):
    """Y = X for X > 0, else alpha * (exp(X / alpha) - 1); ``alpha`` 1.0.  Y may alias X (but
    then no gradient)."""

    args = {"alpha": 1.0}
    params = ("alpha",)
    scalar = staticmethod(celu)
    numpy_fn = staticmethod(lambda x, a: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0) / a)))
    gradient = input_reading_gradient("CeluGradient")


@register_op
class CeluGradient(_ActGradient):
    """dX = dY for X > 0, else dY * exp(X / alpha).  dX may alias dY."""

    args = dict(Celu.args)
    params = ("alpha",)
    scalar = staticmethod(celu_grad)
    numpy_fn = staticmethod(lambda x, dy, a: np.where(x > 0, dy, dy * np.exp(np.minimum(x, 0) / a)))


@register_op
class HardSwish(_Act):
    """Y = X * max(0, min(1, X / 6 + 1/2)).  Y may alias X (but then no gradient)."""

    scalar = staticmethod(hard_swish)
    numpy_fn = staticmethod(lambda x: x * np.clip(x / 6 + 0.5, 0, 1))
    gradient = input_reading_gradient("HardSwishGradient")


@register_op
class HardSwishGradient(_ActGradient):
    """dX = 0 for X < -3, dY for X > 3, else dY * (X / 3 + 1/2).  dX may alias dY."""

    scalar = staticmethod(hard_swish_grad)
    numpy_fn = staticmethod(lambda x, dy: np.where(x < -3, 0.0, np.where(x > 3, dy, dy * (x / 3 + 0.5))))


@register_op
class Mish(_Act):
    """Y = X * tanh(softplus(X)).  Y may alias X (but then no gradient)."""

    scalar = staticmethod(mish)
    numpy_fn = staticmethod(lambda x: x * np.tanh(_np_softplus(x)))
    gradient = input_reading_gradient("MishGradient")


@register_op
class MishGradient(_ActGradient):
    """dX = dY * (t + X * (1 - t²) * sigmoid(X)) with t = tanh(softplus(X)).  dX may alias dY."""

    scalar = staticmethod(mish_grad)

    @staticmethod
    def numpy_fn(x, dy):
        t = np.tanh(_np_softplus(x))
        return dy * (t + x * (1 - t * t) * _np_sigmoid(x))


@register_op
class Gelu(_Act):
    """Y = X * Φ(X) (Φ = the standard normal CDF, via erf), or with ``fast_gelu=1`` the tanh
    approximation 0.5 X (1 + tanh(sqrt(2/pi) (X + 0.044715 X³))).  Y may alias X (but then no
    gradient)."""

    args = {"fast_gelu": 0}
    params = ("fast_gelu",)
    scalar = staticmethod(gelu)
    gradient = input_reading_gradient("GeluGradient")

    @staticmethod
    def numpy_fn(x, fast):
        if fast:
            return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + _np_erf(x * _INV_SQRT_2))


@register_op
class GeluGradient(_ActGradient):
    """dX = dY * dGelu/dX at X (exact or ``fast_gelu`` form).  dX may alias dY."""

    args = dict(Gelu.args)
    params = ("fast_gelu",)
    scalar = staticmethod(gelu_grad)

    @staticmethod
    def numpy_fn(x, dy, fast):
        if fast:
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x))
        return dy * (0.5 * (1 + _np_erf(x * _INV_SQRT_2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


@register_op
class Swish(_Act):
    """Y = X * sigmoid(alpha * X); ``alpha`` 1.0 (Caffe2's Swish).  Y may alias X (but then no
    gradient)."""

    args = {"alpha": 1.0}
    params = ("alpha",)
    scalar = staticmethod(swish)
    numpy_fn = staticmethod(lambda x, a: x * _np_sigmoid(a * x))
    gradient = input_reading_gradient("SwishGradient")


@register_op
class SwishGradient(_ActGradient):
    """dX = dY * (s + alpha X s (1 - s)) with s = sigmoid(alpha X).  dX may alias dY."""

    args = dict(Swish.args)
    params = ("alpha",)
    scalar = staticmethod(swish_grad)

    @staticmethod
    def numpy_fn(x, dy, a):
        s = _np_sigmoid(a * x)
        return dy * (s + a * x * s * (1 - s))


@register_op
class Shrink(UnaryElementwise):
    """Y = X + bias for X < -lambd, X - bias for X > lambd, else 0; ``lambd`` 0.5, ``bias`` 0.
    Any numeric dtype.  Y may alias X (but then no gradient)."""

    args = {"lambd": 0.5, "bias": 0.0}
    params = ("lambd", "bias")
    scalar = staticmethod(shrink)
    gradient = input_reading_gradient("ShrinkGradient")

    @staticmethod
    def reference(X, lambd=0.5, bias=0.0):
        return (np.where(X < -lambd, X + bias, np.where(X > lambd, X - bias, 0)).astype(X.dtype),)


@register_op
class ShrinkGradient(_ActGradient):
    """dX = dY where |X| > lambd, else 0.  dX may alias dY."""

    args = dict(Shrink.args)
    params = ("lambd", "bias")
    scalar = staticmethod(shrink_grad)
    numpy_fn = staticmethod(lambda x, dy, lambd, bias: np.where((x < -lambd) | (x > lambd), dy, 0.0))
