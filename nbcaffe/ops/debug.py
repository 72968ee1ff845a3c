"""Debugging ops: NanCheck and Assert.

Both look for the first offending element with a kernel that returns its flat position (-1
when there is none); the op then builds the message on the host, where it can afford to
count and format.  Print lives in ops/tensor.py and Summarize in ops/reduction.py; the
net-wide check that names the op producing the first NaN is ``nbcaffe.debugging``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


def _flat(a):
    return a.reshape(a.size if a.shape else 1)


def _host(value):
    return value if isinstance(value, np.ndarray) else value.copy_to_host()


# ------------------------------------------------------------------------ NanCheck


@numba.njit(cache=True)
def nan_check_cpu(x, y, copy):
    """y[:] = x[:] when ``copy`` (flat arrays of equal size); returns the first position of a
    NaN or +-Inf in x, or -1."""
    if copy:
        for i in range(x.size):
            y[i] = x[i]
    for i in range(x.size):
        if not math.isfinite(x[i]):
            return i
    return -1


def describe_non_finite(name, value, first=None) -> str:
    """"'name' (2, 3) float32 holds 1 NaN and 0 Inf of 6 values; the first at index (0, 2) is nan"."""
    host = _host(value)
    nan = int(np.isnan(host).sum())
    inf = int(np.isinf(host).sum())
    if first is None:
        first = int(np.flatnonzero(~np.isfinite(host.reshape(-1)))[0])
    where = np.unravel_index(first, host.shape) if host.ndim else ()
    return (f"'{name}' {tuple(host.shape)} {host.dtype.name} holds {nan} NaN and {inf} Inf of {host.size}"
            f" values; the first, at index {tuple(int(i) for i in where)}, is {host.reshape(-1)[first]}")


def _finite_summary(name, value) -> str:
    host = _host(value)
    if host.dtype.kind != "f" or host.size == 0:
        return f"'{name}' {tuple(host.shape)} {host.dtype.name}"
    if not np.isfinite(host).all():
        return describe_non_finite(name, host)
    return f"'{name}' {tuple(host.shape)} {host.dtype.name} finite, min {host.min():g} max {host.max():g}"


@register_op
class NanCheck(Operator):
    """output = tensor, after checking that tensor holds no NaN or +-Inf (else NonFiniteError).

    The error names the blob, counts the NaN and Inf values and gives the index and value of the
    first; any extra inputs are context printed with it (their shape, range or own NaN count),
    as in Caffe2.  Floating point inputs only.  May run in place (output = tensor).  Gradient:
    NanCheck of the output gradient, so the backward pass is checked too.
    """

    inputs, outputs = ("tensor",), ("output",)
    num_inputs = (1, None)
    inplace = {0: 0}
    gradient = simple_gradient("NanCheck", [GO(0)], [GI(0)])
    cpu = staticmethod(nan_check_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        if np.dtype(dtypes[0]).kind != "f":
            raise errors.ShapeError(f"NanCheck checks floating point tensors, got {np.dtype(dtypes[0]).name}")
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(tensor, *others):
        if not np.isfinite(tensor).all():
            raise errors.NonFiniteError(describe_non_finite("tensor", tensor))
        return (tensor.copy(),)

    def bind(self, inputs, outputs):
        x, y = _flat(inputs[0]), _flat(outputs[0])
        copy = outputs[0] is not inputs[0]
        return functools.partial(self._check, self.kernel, x, y, copy, inputs)

    def _check(self, kernel, x, y, copy, inputs):
        first = kernel(x, y, copy)
        if first >= 0:
            lines = [f"Tensor contained NaN or Inf: {describe_non_finite(self.input_names[0], inputs[0], first)}"]
            for name, value in zip(self.input_names[1:], inputs[1:]):
                lines.append(f"    also given: {_finite_summary(name, value)}")
            raise errors.NonFiniteError("\n".join(lines))


# ------------------------------------------------------------------------ Assert


@numba.njit(cache=True)
def assert_cpu(x):
    """The first position of a zero (false) element of flat x, or -1."""
    for i in range(x.size):
        if x[i] == 0:
            return i
    return -1


@register_op
class Assert(Operator):
    """Fails (AssertionFailedError) unless every element of condition is true (non-zero).

    condition is a bool or integer tensor, e.g. the output of a comparison op.  ``error_msg``
    (default '') starts the message, which then names the blob and the first false index.  No
    outputs, no gradient.  The check runs on the op's device; only the result comes back.
    """

    inputs, outputs = ("condition",), ()
    args = {"error_msg": Arg("str", "", "message shown first when the assertion fails")}
    gradient = None
    cpu = staticmethod(assert_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        if np.dtype(dtypes[0]).kind not in "biu":
            raise errors.ShapeError(f"Assert takes a bool or integer tensor, got {np.dtype(dtypes[0]).name}; compare"
                                    f" first (e.g. GT/LT/EQ) to get a bool tensor")
        return [], []

    @staticmethod
    def reference(condition, error_msg=""):
        if not np.all(condition):
            raise errors.AssertionFailedError(error_msg or "Assert failed")
        return ()

    def bind(self, inputs, outputs):
        self.output_spec(inputs)  # dtype check
        return functools.partial(self._check, self.kernel, _flat(inputs[0]), inputs[0])

    def _check(self, kernel, x, value):
        first = kernel(x)
        if first >= 0:
            shape = tuple(value.shape)
            where = tuple(int(i) for i in np.unravel_index(first, shape)) if shape else ()
            false = int((_host(value) == 0).sum())
            message = self.args["error_msg"]
            message = message.decode() if isinstance(message, bytes) else message
            head = f"{message}: " if message else "Assert failed: "
            raise errors.AssertionFailedError(
                f"{head}'{self.input_names[0]}' {shape} has {false} false value(s) of {value.size};"
                f" the first at index {where}")
