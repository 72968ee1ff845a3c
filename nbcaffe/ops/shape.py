"""Tensor metadata as tensors: Shape, Size, and the Range generator.

Shape and Size read only their input's shape (it may live on any device); their int64 output
lives on the op's device and is rewritten when a differently shaped input arrives.  Range's
output length depends on its input *values* (start, limit, delta are read on the host).  No
gradients.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


def write_values_cpu(values, y):
    """y[...] = values (host int64 array of y's shape)."""
    np.copyto(y, values)


def _shape_values(shape, axes, where="Shape") -> np.ndarray:
    shape = tuple(int(d) for d in shape)
    if not axes:
        return np.array(shape, np.int64)
    out = []
    for a in axes:
        a = int(a)
        if not -len(shape) <= a < len(shape):
            raise errors.ShapeError(f"{where}: axis {a} is out of range for an input of shape {shape}")
        out.append(shape[a])
    return np.array(out, np.int64)


@register_op
class Shape(Operator):
    """shape = the dims of data as a 1-D int64 tensor; with ``axes``, only those dims (negative
    axes count from the end).  Reads only data's shape.  No gradient."""

    inputs, outputs = ("data",), ("shape",)
    args = {"axes": Arg("ints", (), "dims to report (default: all)")}
    input_device = {0: "any"}
    cpu = staticmethod(write_values_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        return [(len(args["axes"]) if args["axes"] else len(shapes[0]),)], [np.dtype(np.int64)]

    @staticmethod
    def reference(data, axes=()):
        return (_shape_values(data.shape, axes),)

    def bind(self, inputs, outputs):
        values = _shape_values(inputs[0].shape, self.args["axes"], self.type)
        return functools.partial(self.kernel, values, outputs[0])


@register_op
class Size(Operator):
    """size = the number of elements of data as a 0-d int64 tensor.  No gradient."""

    inputs, outputs = ("data",), ("size",)
    input_device = {0: "any"}
    cpu = staticmethod(write_values_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        return [()], [np.dtype(np.int64)]

    @staticmethod
    def reference(data):
        return (np.array(data.size, np.int64),)

    def bind(self, inputs, outputs):
        return functools.partial(self.kernel, np.array(int(np.prod(inputs[0].shape, dtype=np.int64)), np.int64),
                                 outputs[0])


@numba.njit(cache=True)
def range_cpu(start, delta, y):
    """y[i] = start + i * delta."""
    for i in range(y.size):
        y[i] = start + i * delta


def _range_count(start, limit, delta, where="Range") -> int:
    if delta == 0:
        raise errors.ShapeError(f"{where}: delta must not be 0")
    return max(int(math.ceil((limit - start) / delta)), 0)


@register_op
class Range(Operator):
    """output = [start, start + delta, ...] while below ``limit`` (above it for a negative
    delta): max(ceil((limit - start) / delta), 0) values of start's dtype.

    Inputs: start, limit, delta -- scalars (0-d or 1-element tensors) of one dtype, read on the
    host; or only limit (start 0, delta 1).  The output length depends on their values.  No
    gradient.
    """

    inputs, outputs = ("start", "limit", "delta"), ("output",)
    num_inputs = (1, 3)
    input_device = {0: "host", 1: "host", 2: "host"}
    values_dependent = True
    cpu = staticmethod(range_cpu)
    gradient = None

    def setup(self):
        if len(self.input_names) == 2:
            raise errors.SchemaError(f"{self.where()}: Range takes limit alone or start, limit and delta")

    def _scalars(self, inputs):
        values = [self.read_host(x) for x in inputs]
        for name, v in zip(self.input_names, values):
            if v.size != 1:
                raise errors.ShapeError(f"{self.type}: input '{name}' must hold one value, got shape {v.shape}")
        if len({v.dtype for v in values}) != 1:
            raise errors.ShapeError(f"{self.type}: start, limit and delta must share a dtype, got"
                                    f" {[v.dtype.name for v in values]}")
        scalars = [v.reshape(()).item() for v in values]
        if len(scalars) == 1:
            scalars = [0, scalars[0], 1]
        return scalars, values[0].dtype

    def output_spec(self, inputs):
        (start, limit, delta), dtype = self._scalars(inputs)
        return [(_range_count(start, limit, delta, self.type),)], [dtype]

    @staticmethod
    def infer(args, shapes, dtypes):
        from nbcaffe.shape_inference import UnknownShape

        raise UnknownShape()

    @staticmethod
    def reference(*inputs):
        scalars = [np.asarray(x).reshape(()).item() for x in inputs]
        start, limit, delta = scalars if len(scalars) == 3 else (0, scalars[0], 1)
        n = _range_count(start, limit, delta)
        dtype = np.asarray(inputs[0]).dtype
        return ((start + np.arange(n) * delta).astype(dtype),)

    def bind(self, inputs, outputs):
        (start, _limit, delta), dtype = self._scalars(inputs)
        return functools.partial(self.kernel, dtype.type(start), dtype.type(delta), outputs[0])
