"""Fill ops: ConstantFill, UniformFill, UniformIntFill, GaussianFill, XavierFill, MSRAFill.

Shape rules shared by every fill (Caffe2's FillerOp): without inputs the output has the
``shape`` argument; with one input it has that input's shape, or — with
``input_as_shape=1`` — the shape written *in* the input (a 1-D int tensor); ``extra_shape``
dims are appended in both input cases.

Random fills draw from NumPy's PCG64 generator on the CPU (numba-cuda's xoroshiro128+ on
CUDA), seeded from ``device_option.random_seed`` when set, else from fresh OS entropy (as in
Caffe2).  Each run draws new values.  Their references draw from NumPy's generator too, so
the test harness compares statistics, not values, for them (``random = True``).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from nbcaffe import errors, schema, utils
from nbcaffe.devices import CPU
from nbcaffe.operator import Operator
from nbcaffe.proto import caffe2_pb2
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

T = caffe2_pb2.TensorProto

SHAPE_ARGS = {
    "shape": Arg("ints", (), "output shape when there is no input"),
    "extra_shape": Arg("ints", (), "dims appended to the input-derived shape"),
    "input_as_shape": Arg("bool", False, "input 0 holds the output shape as values"),
}


def fill_shape(inputs, shape=(), extra_shape=(), input_as_shape=False) -> tuple:
    """The output shape of a fill for host inputs (used by the references)."""
    if not inputs:
        return tuple(shape)
    if input_as_shape:
        return tuple(int(v) for v in np.asarray(inputs[0]).reshape(-1)) + tuple(extra_shape)
    return tuple(inputs[0].shape) + tuple(extra_shape)


class FillOp(Operator):
    """Base of the fills: output shape from ``shape`` / input / ``input_as_shape`` / ``extra_shape``."""

    inputs, outputs = ("input",), ("output",)
    num_inputs = (0, 1)
    input_device = {0: "any"}  # only the input's shape (or host values) is read
    gradient = None
    # Caffe2 tutorials pass run_once=0 to fills in training nets; Caffe2 ignored it (fills run
    # on every RunNet), and so does nbcaffe.
    ignored_args = ("run_once",)
    args = dict(SHAPE_ARGS)
    default_dtype = np.float32

    def setup(self):
        if self.args["input_as_shape"] and not self.input_names:
            raise errors.ArgumentError(f"{self.where()}: input_as_shape=1 needs the shape tensor as input 0")
        if self.args["extra_shape"] and not self.input_names:
            raise errors.ArgumentError(f"{self.where()}: extra_shape is only valid with an input")
        if self.input_names and "shape" in self.args.given:
            raise errors.ArgumentError(f"{self.where()}: give the shape either as argument 'shape' or as input 0")
        if self.args["input_as_shape"]:
            self.values_dependent = True  # the shape is in the input's values
            self.input_device = {0: "host"}

    @classmethod
    def dtype_for(cls, args):
        return np.dtype(cls.default_dtype)

    def output_spec(self, inputs):
        if inputs and self.args["input_as_shape"]:
            values = self.read_host(inputs[0])
            if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
                raise errors.ShapeError(
                    f"input_as_shape=1 needs a 1-D integer tensor, got {values.shape} {values.dtype.name}")
            inputs = [values]
        shape = fill_shape(inputs, self.args["shape"], self.args["extra_shape"], self.args["input_as_shape"])
        if any(d < 0 for d in shape):
            raise errors.ShapeError(f"fill shape {shape} has a negative dimension")
        return [shape], [self.dtype_for(self.args)]

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        """Shape inference without values (input_as_shape needs values: unknown)."""
        from nbcaffe.shape_inference import UnknownShape

        if shapes and args["input_as_shape"]:
            raise UnknownShape()
        shape = tuple(args["shape"]) if not shapes else tuple(shapes[0]) + tuple(args["extra_shape"])
        return [shape], [cls.dtype_for(args)]

    def seed(self):
        """device_option.random_seed, or None for fresh entropy."""
        option = self.device_option
        if option is not None and option.HasField("random_seed"):
            return int(option.random_seed)
        return None


# ----------------------------------------------------------------------- ConstantFill


@numba.njit(cache=True)
def constant_fill_cpu(y, value):
    """y[:] = value over flat y."""
    for i in range(y.size):
        y[i] = value


def constant_dtype(value, dtype):
    """ConstantFill's output dtype: ``dtype`` if given, else INT64 for an int value, else FLOAT."""
    if dtype is not None:
        return utils.dtype_of(dtype)
    if isinstance(value, int) and not isinstance(value, bool):
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def typed_value(value, dtype):
    dtype = np.dtype(dtype)
    if isinstance(value, (tuple, list)):
        raise errors.ArgumentError("ConstantFill: 'value' must be a single number or string")
    if dtype.kind == "O":
        return value.encode("utf-8") if isinstance(value, str) else value
    if dtype == np.bool_:
        return bool(value)
    if np.issubdtype(dtype, np.integer):
        return int(value)
    return float(value)


@register_op
class ConstantFill(FillOp):
    """Y = value everywhere, shaped by ``shape`` / input / ``input_as_shape`` / ``extra_shape``.

    ``dtype`` (TensorProto.DataType) picks the element type; without it the output is INT64
    when ``value`` is an int and FLOAT otherwise (Caffe2's rule).  ``value`` defaults to 0.0.
    """

    args = {**SHAPE_ARGS, "value": Arg("any", 0.0, "fill value"),
            "dtype": Arg("int", None, "TensorProto.DataType of the output")}
    cpu = staticmethod(constant_fill_cpu)

    @classmethod
    def dtype_for(cls, args):
        return constant_dtype(args["value"], args["dtype"])

    @staticmethod
    def reference(*inputs, value=0.0, dtype=None, shape=(), extra_shape=(), input_as_shape=False):
        out_dtype = constant_dtype(value, dtype)
        out = np.empty(fill_shape(inputs, shape, extra_shape, input_as_shape), dtype=out_dtype)
        out[...] = typed_value(value, out_dtype)
        return (out,)

    def bind(self, inputs, outputs):
        y = outputs[0]
        value = typed_value(self.args["value"], y.dtype)
        if y.dtype == object:
            return functools.partial(y.fill, value)
        return functools.partial(self.kernel, y.reshape(y.size), value)


# ----------------------------------------------------------------------- random fills


def uniform_fill_cpu(rng, y, lo, hi):
    """y[:] ~ Uniform(lo, hi) from a NumPy Generator (y: flat float32/float64)."""
    rng.random(out=y, dtype=y.dtype.type)
    y *= hi - lo
    y += lo


def uniform_int_fill_cpu(rng, y, lo, hi):
    """y[:] ~ integers in [lo, hi] (inclusive) from a NumPy Generator (y: flat ints)."""
    y[...] = rng.integers(lo, hi, size=y.size, endpoint=True, dtype=y.dtype)


def gaussian_fill_cpu(rng, y, mean, std):
    """y[:] ~ Normal(mean, std) from a NumPy Generator (y: flat float32/float64)."""
    rng.standard_normal(out=y, dtype=y.dtype.type)
    y *= std
    y += mean


def xavier_scale(shape) -> float:
    """Half-width of XavierFill's range: sqrt(3 / fan_in), fan_in = size / shape[0]."""
    if not shape or shape[0] == 0 or schema.prod(shape) == 0:
        raise errors.ShapeError(f"XavierFill needs a non-empty shape, got {tuple(shape)}")
    return math.sqrt(3.0 / (schema.prod(shape) // shape[0]))


def msra_std(shape) -> float:
    """Standard deviation of MSRAFill: sqrt(2 / fan_out), fan_out = size / shape[1]."""
    if len(shape) < 2 or schema.prod(shape) == 0:
        raise errors.ShapeError(f"MSRAFill needs at least 2 non-empty dims, got {tuple(shape)}")
    return math.sqrt(2.0 / (schema.prod(shape) // shape[1]))


class RandomFill(FillOp):
    """Base of the random fills: ``bind`` passes the device's generator and two parameters."""

    random = True

    def parameters(self, shape):
        raise NotImplementedError

    _rng = None

    def generator(self):
        """The op's generator, made once per op instance (Caffe2 seeds a context once per op).

        bind runs again whenever the op re-prepares (``input_as_shape``, a re-fed input blob);
        a generator made there would restart a seeded sequence and repeat the same draws.
        """
        if self._rng is None:
            self._rng = self.ctx.make_rng(self.seed())
        return self._rng

    def bind(self, inputs, outputs):
        y = outputs[0]
        lo, hi = self.parameters(tuple(y.shape))
        return functools.partial(self.kernel, self.generator(), y.reshape(y.size), lo, hi)


@register_op
class UniformFill(RandomFill):
    """Y ~ Uniform(min, max) elementwise (float32); ``min`` default 0, ``max`` default 1."""

    args = {**SHAPE_ARGS, "min": 0.0, "max": 1.0}
    cpu = staticmethod(uniform_fill_cpu)

    def setup(self):
        super().setup()
        if self.args["min"] > self.args["max"]:
            raise errors.ArgumentError(f"{self.where()}: min={self.args['min']} > max={self.args['max']}")

    def parameters(self, shape):
        return float(self.args["min"]), float(self.args["max"])

    @staticmethod
    def reference(*inputs, min=0.0, max=1.0, **shape_args):
        shape = fill_shape(inputs, **shape_args)
        return (np.random.default_rng().uniform(min, max, size=shape).astype(np.float32),)


@register_op
class UniformIntFill(RandomFill):
    """Y ~ uniform integers in [min, max] (both inclusive), int32; ``min`` 0, ``max`` 1."""

    args = {**SHAPE_ARGS, "min": 0, "max": 1}
    default_dtype = np.int32
    cpu = staticmethod(uniform_int_fill_cpu)

    def setup(self):
        super().setup()
        if self.args["min"] > self.args["max"]:
            raise errors.ArgumentError(f"{self.where()}: min={self.args['min']} > max={self.args['max']}")

    def parameters(self, shape):
        return int(self.args["min"]), int(self.args["max"])

    @staticmethod
    def reference(*inputs, min=0, max=1, **shape_args):
        shape = fill_shape(inputs, **shape_args)
        return (np.random.default_rng().integers(min, max, size=shape, endpoint=True).astype(np.int32),)


@register_op
class GaussianFill(RandomFill):
    """Y ~ Normal(mean, std) elementwise (float32); ``mean`` default 0, ``std`` default 1."""

    args = {**SHAPE_ARGS, "mean": 0.0, "std": 1.0}
    cpu = staticmethod(gaussian_fill_cpu)

    def parameters(self, shape):
        return float(self.args["mean"]), float(self.args["std"])

    @staticmethod
    def reference(*inputs, mean=0.0, std=1.0, **shape_args):
        shape = fill_shape(inputs, **shape_args)
        return (np.random.default_rng().normal(mean, std, size=shape).astype(np.float32),)


@register_op
class XavierFill(RandomFill):
    """Y ~ Uniform(-s, s), s = sqrt(3 / fan_in), fan_in = size / shape[0] (float32).

    Caffe2's default initialiser of FC and Conv weights (Caffe's "xavier" with FAN_IN).
    """

    cpu = staticmethod(uniform_fill_cpu)

    def parameters(self, shape):
        s = xavier_scale(shape)
        return -s, s

    @staticmethod
    def reference(*inputs, **shape_args):
        shape = fill_shape(inputs, **shape_args)
        s = xavier_scale(shape)
        return (np.random.default_rng().uniform(-s, s, size=shape).astype(np.float32),)


@register_op
class MSRAFill(RandomFill):
    """Y ~ Normal(0, sqrt(2 / fan_out)), fan_out = size / shape[1] (float32; He initialisation)."""

    cpu = staticmethod(gaussian_fill_cpu)

    def parameters(self, shape):
        return 0.0, msra_std(shape)

    @staticmethod
    def reference(*inputs, **shape_args):
        shape = fill_shape(inputs, **shape_args)
        return (np.random.default_rng().normal(0.0, msra_std(shape), size=shape).astype(np.float32),)


# ----------------------------------------------------------------------- GivenTensorFill family


@numba.njit(cache=True)
def given_fill_cpu(values, y):
    """y[:] = values (flat, equal sizes; values already in y's dtype)."""
    for i in range(y.size):
        y[i] = values[i]


class GivenFill(FillOp):
    """Base of the GivenTensor*Fill ops: the output holds ``values`` (row-major), shaped like
    the other fills; ``len(values)`` must equal the number of elements."""

    value_kind = "float_array"
    cpu = staticmethod(given_fill_cpu)

    def setup(self):
        super().setup()
        self.values = self.typed_values(self.args["values"])

    @classmethod
    def typed_values(cls, values):
        return np.asarray(values).astype(cls.default_dtype)

    def output_spec(self, inputs):
        shapes, dtypes = super().output_spec(inputs)
        if schema.prod(shapes[0]) != self.values.size:
            raise errors.ShapeError(
                f"'values' holds {self.values.size} elements but the output shape {tuple(shapes[0])}"
                f" needs {schema.prod(shapes[0])}")
        return shapes, dtypes

    def bind(self, inputs, outputs):
        y = outputs[0]
        if y.dtype == object:
            return functools.partial(_copy_objects, self.values, y)
        return functools.partial(self.kernel, self.ctx.from_host(self.values), y.reshape(y.size))

    @classmethod
    def make_reference(cls):
        def reference(*inputs, values=(), **shape_args):
            shape = fill_shape(inputs, **shape_args)
            return (cls.typed_values(values).reshape(shape),)

        return staticmethod(reference)


def _copy_objects(values, y):
    y.reshape(-1)[:] = values


def _given(name, dtype, kind, doc, devices=None):
    attrs = {
        "__doc__": doc,
        "args": {**SHAPE_ARGS, "values": Arg(kind, (), "the elements, row-major")},
        "default_dtype": dtype,
    }
    if devices is not None:
        attrs["devices"] = devices
    cls = type(name, (GivenFill,), attrs)
    cls.__module__ = __name__
    cls.reference = GivenFill.make_reference.__func__(cls)
    return register_op(cls)


def _strings_to_objects(values):
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
    return out


GivenTensorFill = _given("GivenTensorFill", np.float32, "float_array",
                         "Y = values (float32) shaped by ``shape``; the init-net op of Caffe2 model files.")
GivenTensorDoubleFill = _given("GivenTensorDoubleFill", np.float64, "float_array",
                               "Y = values (float64) shaped by ``shape``.")
GivenTensorIntFill = _given("GivenTensorIntFill", np.int32, "int_array",
                            "Y = values (int32, from the ``ints`` field) shaped by ``shape``.")
GivenTensorInt16Fill = _given("GivenTensorInt16Fill", np.int16, "int_array",
                              "Y = values (int16, from the ``ints`` field) shaped by ``shape``.")
GivenTensorInt64Fill = _given("GivenTensorInt64Fill", np.int64, "int_array",
                              "Y = values (int64, from the ``ints`` field) shaped by ``shape``.")
GivenTensorBoolFill = _given("GivenTensorBoolFill", np.bool_, "int_array",
                             "Y = values (bool, from the ``ints`` field: nonzero is true) shaped by ``shape``.")


class GivenTensorStringFill(GivenFill):
    """Y = values (strings, as bytes objects) shaped by ``shape``; CPU only."""

    args = {**SHAPE_ARGS, "values": Arg("bytes_list", (), "the elements, row-major")}
    default_dtype = object
    devices = (CPU,)

    @classmethod
    def typed_values(cls, values):
        return _strings_to_objects(values)


GivenTensorStringFill.reference = GivenFill.make_reference.__func__(GivenTensorStringFill)
register_op(GivenTensorStringFill)


class GivenTensorByteStringToUInt8Fill(GivenFill):
    """Y = the bytes of ``values[0]`` as uint8, shaped by ``shape`` (raw image bytes); CPU only."""

    args = {**SHAPE_ARGS, "values": Arg("bytes_list", (), "one byte string")}
    default_dtype = np.uint8
    devices = (CPU,)

    @classmethod
    def typed_values(cls, values):
        data = b"".join(bytes(v) for v in values)
        return np.frombuffer(data, dtype=np.uint8).copy()


GivenTensorByteStringToUInt8Fill.reference = GivenFill.make_reference.__func__(GivenTensorByteStringToUInt8Fill)
register_op(GivenTensorByteStringToUInt8Fill)
