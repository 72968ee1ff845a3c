"""Elementwise math functions: Scale, Exp, Log, Sqrt, Abs, Negative, Sqr, Clip, Pow (exponent
as an argument or a broadcasting tensor), and their gradient ops.  Add, Sub, Mul, Div and Sum
are in arithmetic.py.

Scalar functions here are plain Python over one or two values; the bases in
``_elementwise`` compile them with ``@njit`` and nbcaffe/cuda/elementwise_math.py with
``@cuda.jit(device=True)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, GradientContext, I, O, simple_gradient
from nbcaffe.ops._binary_ops import _binary_reference, binary_gradient, refuse_overwritten
from nbcaffe.ops._elementwise import (
    BinaryElementwise,
    BinaryGradient,
    SizeSwitch,
    UnaryElementwise,
    UnaryGradient,
    binary_kernels,
    broadcast_gradient_kernels,
    choose,
    flat,
    unary_kernel,
)
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


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


# ---------------------------------------------------------------- gradient scalars
# Partials of Pow's tensor form at one position of Y, as f(dC, C, A, B) with C = Y, A = X and
# B = E (the broadcast-gradient kernels sum them over the dims along which X or E was
# broadcast); then the partials of the unary ops.


def pow_grad_x(dc, c, a, b):
    return dc * b * a ** (b - 1)


def pow_grad_e(dc, c, a, b):
    # NOTE: branches instead of math.log alone: in plain Python (the CUDA simulator) math.log
    # raises for a <= 0, while compiled code and NumPy give -inf / NaN
    if a > 0:
        return dc * c * math.log(a)
    return dc * c * (-math.inf if a == 0 else math.nan)


def exp_grad(y, dy):
    return dy * y


def log_grad(x, dy):
    return dy / x


def sqrt_grad(y, dy):
    return 0.5 * dy / y


def abs_grad(x, dy):
    # sign(X) * dY, with 0 at the kink X == 0 (Caffe2)
    if x > 0:
        return dy
    if x < 0:
        return -dy
    return dy * 0


def sqr_grad(x, dy):
    return (x + x) * dy


def clip_grad(y, dy, lo, hi):
    # Caffe2 reads the clipped output: the gradient passes only strictly inside (min, max)
    return dy if y > lo and y < hi else dy * 0


def pow_grad(dy, x, e):
    return dy * e * x ** (e - 1)


# NumPy forms (SizeSwitch, >= 256 elements) of the gradients whose numba loops are slow: a
# libm pow per element, or a division the loop does not vectorise (numba checks each divisor
# for zero).  At 4096 float32 elements (two runs, a shared 2-core machine): pow_grad loop
# 57-77 us vs ufuncs 6.4-6.9 us; dY / X 3.6-5.8 us vs 1.2 us; 0.5 dY / Y 4.8-10 us vs 1.9 us.
# At 256 the two forms are within 1.5x of each other.  dX may alias dY.


def log_grad_vector(x, dy, dx):
    np.divide(dy, x, out=dx)


def sqrt_grad_vector(y, dy, dx):
    np.divide(dy, y, out=dx)
    dx *= 0.5


def pow_grad_vector(dy, x, dx, e):
    np.power(x, x.dtype.type(e - 1), out=dx)
    dx *= dy
    dx *= x.dtype.type(e)


# ---------------------------------------------------------------- gradient makers


def input_reading_gradient(grad_type):
    """``grad_type(X, dY) -> dX`` (forward arguments copied); refuses an in-place forward op,
    whose X is gone when the gradient runs."""
    make = simple_gradient(grad_type, [I(0), GO(0)], [GI(0)])

    def maker(op, g_output):
        refuse_overwritten(op, (0,))
        return make(op, g_output)

    maker.grad_op_type = grad_type
    return maker


_POW_TENSOR_GRADIENT = binary_gradient("PowGradient", reads=(0, 1), with_output=True)


def pow_gradient(op, g_output):
    """PowGradient(dY, X) -> dX with the forward ``exponent`` argument, or, for a tensor
    exponent, PowGradient(dY, X, E, Y) -> (dX, dE)."""
    if len(op.input) == 2:
        return _POW_TENSOR_GRADIENT(op, g_output)
    refuse_overwritten(op, (0,))
    ctx = GradientContext(op, g_output)
    ctx.add("PowGradient", [GO(0), I(0)], [GI(0)])
    return ctx.result()


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
    gradient = simple_gradient("ExpGradient", [O(0), GO(0)], [GI(0)])
    numpy_fn = staticmethod(np.exp)
    vector = staticmethod(lambda x, y: np.exp(x, out=y))


@register_op
class Log(_Unary):
    """Y = log(X) (natural logarithm), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(log)
    gradient = input_reading_gradient("LogGradient")
    numpy_fn = staticmethod(np.log)
    vector = staticmethod(lambda x, y: np.log(x, out=y))


@register_op
class Sqrt(_Unary):
    """Y = sqrt(X), elementwise.  Y may alias X."""

    float_only = True
    scalar = staticmethod(sqrt)
    gradient = simple_gradient("SqrtGradient", [O(0), GO(0)], [GI(0)])
    numpy_fn = staticmethod(np.sqrt)


@register_op
class Abs(_Unary):
    """Y = |X|, elementwise.  Y may alias X."""

    scalar = staticmethod(absolute)
    gradient = input_reading_gradient("AbsGradient")
    numpy_fn = staticmethod(np.abs)


@register_op
class Negative(_Unary):
    """Y = -X, elementwise.  Y may alias X."""

    scalar = staticmethod(negative)
    gradient = simple_gradient("Negative", [GO(0)], [GI(0)])
    numpy_fn = staticmethod(np.negative)


@register_op
class Sqr(_Unary):
    """Y = X * X, elementwise.  Y may alias X."""

    scalar = staticmethod(sqr)
    gradient = input_reading_gradient("SqrGradient")
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
    gradient = simple_gradient("ClipGradient", [O(0), GO(0)], [GI(0)])
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
    gradient = staticmethod(pow_gradient)

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


# ============================================================================ gradient ops


class PowGradKernels:
    """``scalar(dy, x, dx, exponent)`` for the argument form, ``broadcast`` (a
    BroadcastGradKernels pair) for the tensor-exponent form."""

    __slots__ = ("scalar", "broadcast")

    def __init__(self, scalar, broadcast):
        self.scalar = scalar
        self.broadcast = broadcast


@register_op
class PowGradient(BinaryGradient):
    """dX = dY * E * X^(E-1); with a tensor exponent also dE = dY * Y * log(X), each summed over
    the dims along which its input was broadcast.

    Argument form: inputs dY, X with the forward ``exponent`` argument; output dX.  Tensor
    form: inputs dY, X, exponent E, Y (the forward output); outputs dX, dE; broadcasting as in
    Pow (``broadcast``/``axis`` or NumPy-style).  X <= 0 gives NaN/inf in dE, as log does.
    """

    inputs, outputs = ("dY", "X", "exponent", "Y"), ("dX", "dexponent")
    num_inputs = (2, 4)
    num_outputs = (1, 2)
    args = dict(Pow.args)
    grad_a = staticmethod(pow_grad_x)
    grad_b = staticmethod(pow_grad_e)
    numpy_partials = staticmethod(lambda dc, c, a, b: (dc * b * a ** (b - 1), dc * c * np.log(a)))

    @classmethod
    def build_cpu_kernel(cls):
        scalar = SizeSwitch(binary_kernels(pow_grad, 1).same, pow_grad_vector)
        return PowGradKernels(scalar, broadcast_gradient_kernels(pow_grad_x, pow_grad_e))

    def setup(self):
        n_in, n_out = len(self.input_names), len(self.output_names)
        has_arg = "exponent" in self.args.given
        if not ((n_in == 2 and has_arg and n_out == 1) or (n_in == 4 and not has_arg and n_out == 2)):
            raise errors.ArgumentError(
                f"{self.where()}: PowGradient takes (dY, X) -> dX with the 'exponent' argument, or"
                f" (dY, X, exponent, Y) -> (dX, dexponent) without it; got {n_in} inputs, {n_out} outputs"
                f" and {'an' if has_arg else 'no'} 'exponent' argument")

    @classmethod
    def infer(cls, args, shapes, dtypes):
        if len(shapes) == 2:
            if tuple(shapes[0]) != tuple(shapes[1]):
                raise errors.ShapeError(f"dY {tuple(shapes[0])} and X {tuple(shapes[1])} must have the same shape")
            return [shapes[1]], [dtypes[0]]
        return BinaryGradient.infer.__func__(cls, args, shapes, dtypes)

    @classmethod
    def reference(cls, dY, X, *rest, exponent=None, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        if not rest:
            x = X.astype(np.float64)
            with np.errstate(all="ignore"):
                return ((dY.astype(np.float64) * exponent * x ** (exponent - 1)).astype(dY.dtype),)
        E, Y = rest
        return BinaryGradient.reference.__func__(cls, dY, X, E, Y, broadcast, axis, axis_str, order)

    def reference_kwargs(self):
        kwargs = super().reference_kwargs()
        if len(self.input_names) == 4:
            kwargs.pop("exponent", None)
        return kwargs

    def bind(self, inputs, outputs):
        if len(inputs) == 2:
            x = flat(inputs[1])
            return functools.partial(choose(self.kernel.scalar, x.size), flat(inputs[0]), x, flat(outputs[0]),
                                     float(self.args["exponent"]))
        return self.bind_broadcast(self.kernel.broadcast, inputs, outputs)


def _gradient_reference(fn):
    """Reference of a unary gradient op: fn(forward tensor, dY, **args) in float64."""

    def reference(T, dY, **args):
        with np.errstate(all="ignore"):
            return (np.asarray(fn(T.astype(np.float64), dY.astype(np.float64), **args)).astype(dY.dtype),)

    return staticmethod(reference)


@register_op
class ExpGradient(UnaryGradient):
    """dX = dY * Y (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(exp_grad)
    reference = _gradient_reference(lambda y, dy: dy * y)


@register_op
class LogGradient(UnaryGradient):
    """dX = dY / X (reads the forward input X).  dX may alias dY."""

    inputs = ("X", "dY")
    scalar = staticmethod(log_grad)
    vector = staticmethod(log_grad_vector)
    reference = _gradient_reference(lambda x, dy: dy / x)


@register_op
class SqrtGradient(UnaryGradient):
    """dX = 0.5 * dY / Y (reads the forward output Y).  dX may alias dY."""

    scalar = staticmethod(sqrt_grad)
    vector = staticmethod(sqrt_grad_vector)
    reference = _gradient_reference(lambda y, dy: 0.5 * dy / y)


@register_op
class AbsGradient(UnaryGradient):
    """dX = sign(X) * dY, 0 at X == 0 (reads the forward input X).  dX may alias dY."""

    inputs = ("X", "dY")
    scalar = staticmethod(abs_grad)
    reference = _gradient_reference(lambda x, dy: np.sign(x) * dy)


@register_op
class SqrGradient(UnaryGradient):
    """dX = 2 * X * dY (reads the forward input X).  dX may alias dY."""

    inputs = ("X", "dY")
    scalar = staticmethod(sqr_grad)
    reference = _gradient_reference(lambda x, dy: 2 * x * dy)


@register_op
class ClipGradient(UnaryGradient):
    """dX = dY where min < Y < max, else 0 (reads the forward output Y, as Caffe2).

    dX may alias dY.  Arguments ``min`` and ``max`` as Clip's (default: no bound).
    """

    args = {"min": -math.inf, "max": math.inf}
    params = ("min", "max")
    scalar = staticmethod(clip_grad)
    reference = _gradient_reference(
        lambda y, dy, **args: np.where((y > args.get("min", -math.inf)) & (y < args.get("max", math.inf)), dy, 0))
