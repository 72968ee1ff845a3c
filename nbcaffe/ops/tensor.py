"""Tensor plumbing: Reshape, Flatten, FlattenToVec, Cast, Copy, StopGradient, Print and the
cross-device copies (EnsureCPUOutput, CopyFromCPUInput, CopyCPUToGPU, CopyGPUToCPU).

Ops that only change a shape copy the data into their own output buffer unless they run in
place, where the output is a view of the input: outputs never alias another blob, so the
runner can reuse output buffers safely (see nbcaffe/operator.py).
"""

from __future__ import annotations

import functools
import os

import numba
import numpy as np

from nbcaffe import errors, schema, utils
from nbcaffe.autograd import GI, GO, GradientContext, I, O, simple_gradient
from nbcaffe.devices import CUDA
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


@numba.njit(cache=True)
def copy_cpu(x, y):
    """y[:] = x[:] over flat arrays of equal size (casting to y's dtype)."""
    for i in range(x.size):
        y[i] = x[i]


@numba.njit(cache=True)
def cast_to_bool_cpu(x, y):
    """y[i] = x[i] != 0 over flat arrays."""
    for i in range(x.size):
        y[i] = x[i] != 0


def flat(a):
    return a.reshape(a.size if a.shape else 1)


class ShapeOnly(Operator):
    """Base of ops whose output is the input's data with a new shape (copied, or a view when
    the op runs in place)."""

    inplace = {0: 0}
    cpu = staticmethod(copy_cpu)

    def new_shape(self, inputs) -> tuple:
        raise NotImplementedError

    def output_spec(self, inputs):
        return [self.new_shape(inputs)], [np.dtype(inputs[0].dtype)]

    def allocate_outputs(self, inputs, shapes, dtypes):
        if self.output_names[0] != self.input_names[0]:
            return super().allocate_outputs(inputs, shapes, dtypes)
        x = inputs[0]  # in place: the output is a view of the input under the same name
        outs = [x if tuple(x.shape) == tuple(shapes[0]) else x.reshape(shapes[0])]
        outs += [self.allocate_output(j, inputs, shapes[j], dtypes[j]) for j in range(1, len(shapes))]
        return outs

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y is x or self.output_names[0] == self.input_names[0]:
            return _noop
        return functools.partial(self.kernel, flat(x), flat(y))


def _noop():
    pass


def reshape_dims(old_shape, requested) -> tuple:
    """Caffe2's Reshape rule: 0 copies the input dim at that index, one -1 is inferred."""
    old_shape = tuple(old_shape)
    total = schema.prod(old_shape)
    dims = []
    unknown = None
    for i, d in enumerate(requested):
        d = int(d)
        if d == 0:
            if i >= len(old_shape):
                raise errors.ShapeError(
                    f"shape {tuple(requested)}: dim {i} is 0 (copy) but the input {old_shape} has no dim {i}")
            d = old_shape[i]
        elif d == -1:
            if unknown is not None:
                raise errors.ShapeError(f"shape {tuple(requested)} has more than one -1")
            unknown = i
        elif d < -1:
            raise errors.ShapeError(f"shape {tuple(requested)} has a negative dim {d}")
        dims.append(d)
    if unknown is not None:
        known = schema.prod([d for i, d in enumerate(dims) if i != unknown])
        if known == 0 or total % known:
            raise errors.ShapeError(f"cannot reshape {old_shape} ({total} elements) to {tuple(requested)}")
        dims[unknown] = total // known
    if schema.prod(dims) != total:
        raise errors.ShapeError(
            f"cannot reshape {old_shape} ({total} elements) to {tuple(dims)} ({schema.prod(dims)} elements)")
    return tuple(dims)


@register_op
class Reshape(ShapeOnly):
    """reshaped = data with the shape from argument ``shape`` or input ``new_shape``;
    old_shape = data's shape (int64).

    In the requested shape a 0 keeps the input dim at that index and one -1 is inferred.
    Runs in place on data (then the output is a view, no copy).
    """

    inputs, outputs = ("data", "new_shape"), ("reshaped", "old_shape")
    num_inputs = (1, 2)
    num_outputs = (1, 2)
    args = {"shape": Arg("ints", None, "the new shape")}
    input_device = {1: "host"}
    gradient = staticmethod(lambda op, g_output: reshape_gradient(op, g_output))

    def setup(self):
        has_arg = self.args["shape"] is not None
        if has_arg == (len(self.input_names) == 2):
            raise errors.ArgumentError(
                f"{self.where()}: give the new shape either as argument 'shape' or as input 1, not"
                f" {'both' if has_arg else 'neither'}")
        if len(self.input_names) == 2:
            self.values_dependent = True

    def requested(self, inputs):
        if self.args["shape"] is not None:
            return self.args["shape"]
        values = self.read_host(inputs[1])
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise errors.ShapeError(f"new_shape must be a 1-D int tensor, got {values.shape} {values.dtype.name}")
        return tuple(int(v) for v in values)

    def new_shape(self, inputs):
        return reshape_dims(inputs[0].shape, self.requested(inputs))

    def output_spec(self, inputs):
        shape = self.new_shape(inputs)
        return [shape, (len(inputs[0].shape),)], [np.dtype(inputs[0].dtype), np.dtype(np.int64)]

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        if args["shape"] is None:
            raise UnknownShape()
        return [reshape_dims(shapes[0], args["shape"]), (len(shapes[0]),)], [dtypes[0], np.dtype(np.int64)]

    @staticmethod
    def reference(data, new_shape=None, shape=None):
        requested = shape if shape is not None else tuple(int(v) for v in new_shape)
        return (data.reshape(reshape_dims(data.shape, requested)).copy(), np.asarray(data.shape, dtype=np.int64))

    def bind(self, inputs, outputs):
        data_copy = super().bind(inputs, outputs)
        if len(outputs) < 2:
            return data_copy
        old = outputs[1]
        old_values = np.asarray(inputs[0].shape, dtype=np.int64)
        if isinstance(old, np.ndarray):
            def call():
                data_copy()
                old[...] = old_values
        else:
            def call():
                data_copy()
                old.copy_to_device(old_values)
        return call


def reshape_gradient(op, g_output):
    """Caffe2's maker: Reshape(dY, old_shape) -> dX (no forward arguments copied); a Reshape
    without its old_shape output uses ResizeLike(dY, X)."""
    ctx = GradientContext(op, g_output)
    if len(op.output) > 1:
        ctx.add("Reshape", [GO(0), O(1)], [GI(0), "_" + op.input[0] + "_grad_dims"], copy_arguments=False)
    else:
        ctx.add("ResizeLike", [GO(0), I(0)], [GI(0)], copy_arguments=False)
    return ctx.result()


RESIZE_LIKE_GRADIENT = simple_gradient("ResizeLike", [GO(0), I(0)], [GI(0)], copy_arguments=False)


@register_op
class Flatten(ShapeOnly):
    """output = input viewed as 2-D (prod(dims[:axis]), prod(dims[axis:])); ``axis`` default 1."""

    inputs, outputs = ("input",), ("output",)
    args = {"axis": 1}
    gradient = RESIZE_LIKE_GRADIENT

    def new_shape(self, inputs):
        return schema.flatten_2d(inputs[0].shape, self.args["axis"])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [schema.flatten_2d(shapes[0], args["axis"])], [dtypes[0]]

    @staticmethod
    def reference(input, axis=1):
        return (input.reshape(schema.flatten_2d(input.shape, axis)).copy(),)


@register_op
class FlattenToVec(ShapeOnly):
    """output = input as a 1-D vector of all its elements."""

    inputs, outputs = ("input",), ("output",)
    gradient = RESIZE_LIKE_GRADIENT

    def new_shape(self, inputs):
        return (int(inputs[0].size),)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [(schema.prod(shapes[0]),)], [dtypes[0]]

    @staticmethod
    def reference(input):
        return (input.reshape(-1).copy(),)


@register_op
class ResizeLike(ShapeOnly):
    """output = data with the shape of ``like`` (same number of elements; data is copied)."""

    inputs, outputs = ("data", "like"), ("output",)
    input_device = {1: "any"}  # only like's shape is read
    gradient = simple_gradient("ResizeLike", [GO(0), I(0)], [GI(0)], copy_arguments=False)

    def new_shape(self, inputs):
        return tuple(inputs[1].shape)

    @staticmethod
    def infer(args, shapes, dtypes):
        if schema.prod(shapes[0]) != schema.prod(shapes[1]):
            raise errors.ShapeError(f"cannot resize {tuple(shapes[0])} like {tuple(shapes[1])}: element counts differ")
        return [shapes[1]], [dtypes[0]]

    def output_spec(self, inputs):
        return type(self).infer(self.args, [tuple(x.shape) for x in inputs], [x.dtype for x in inputs])

    @staticmethod
    def reference(data, like):
        return (data.reshape(like.shape).copy(),)


def cast_target(to):
    """NumPy dtype for Cast's ``to`` (a TensorProto.DataType number or its name)."""
    if isinstance(to, str):
        try:
            to = utils.caffe2_pb2.TensorProto.DataType.Value(to.upper())
        except ValueError:
            raise errors.ArgumentError(f"Cast: unknown data type name '{to}'") from None
    if to is None:
        raise errors.ArgumentError("Cast: argument 'to' is required")
    dtype = utils.dtype_of(to)
    if dtype.kind == "O":
        raise errors.ArgumentError("Cast to STRING is not supported")
    return dtype


class CastKernels:
    """``copy(x, y)`` converts on store; ``to_bool(x, y)`` tests != 0 (flat arrays)."""

    __slots__ = ("copy", "to_bool")

    def __init__(self, copy, to_bool):
        self.copy = copy
        self.to_bool = to_bool


def cast_gradient(op, g_output):
    """Cast the output gradient back to the input's type: ``from_type`` when the forward op
    has it (Caffe2), else read from the input tensor itself (Cast's ``like`` input) — so the
    gradient works without the argument Caffe2 users never set."""
    ctx = GradientContext(op, g_output)
    from_type = next((a for a in op.arg if a.name == "from_type"), None)
    if from_type is not None:
        ctx.add("Cast", [GO(0)], [GI(0)], copy_arguments=False, to=from_type.i if from_type.HasField("i")
                else from_type.s.decode())
    else:
        ctx.add("Cast", [GO(0), I(0)], [GI(0)], copy_arguments=False)
    return ctx.result()


@register_op
class Cast(Operator):
    """output = input converted to type ``to`` (TensorProto.DataType number or name), or — with
    a second input ``like`` and no ``to`` — to like's type (nbcaffe extension used by the
    gradient).

    Float to int truncates toward zero; to BOOL tests != 0.
    """

    inputs, outputs = ("input", "like"), ("output",)
    num_inputs = (1, 2)
    input_device = {1: "any"}  # only like's dtype is read
    args = {"to": Arg("any", None, "TensorProto.DataType of the output"),
            "from_type": Arg("any", None, "input type (read by the gradient maker)")}
    cpu = CastKernels(copy_cpu, cast_to_bool_cpu)
    gradient = staticmethod(cast_gradient)

    def setup(self):
        if (self.args["to"] is None) == (len(self.input_names) == 1):
            raise errors.ArgumentError(
                f"{self.where()}: give the target type as argument 'to' or as a second input (like), not"
                f" {'neither' if self.args['to'] is None else 'both'}"
                + ("; required argument 'to' is missing" if self.args["to"] is None else ""))

    @staticmethod
    def infer(args, shapes, dtypes):
        if args["to"] is None:
            if len(dtypes) < 2:
                raise errors.ArgumentError("Cast: required argument 'to' is missing")
            return [shapes[0]], [dtypes[1]]
        return [shapes[0]], [cast_target(args["to"])]

    @staticmethod
    def reference(input, like=None, to=None):
        dtype = cast_target(to) if to is not None else like.dtype
        if dtype == np.bool_:
            return (input != 0,)
        return (input.astype(dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y.dtype == np.bool_ and x.dtype != np.bool_:
            return functools.partial(self.kernel.to_bool, flat(x), flat(y))
        return functools.partial(self.kernel.copy, flat(x), flat(y))


class Identity(Operator):
    """Base of ops that copy their input unchanged to a new buffer."""

    inputs, outputs = ("input",), ("output",)
    cpu = staticmethod(copy_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [shapes[0]], [dtypes[0]]

    @staticmethod
    def reference(input):
        return (input.copy(),)

    def bind(self, inputs, outputs):
        if outputs[0] is inputs[0]:
            return _noop
        return functools.partial(self.kernel, flat(inputs[0]), flat(outputs[0]))


@register_op
class Copy(Identity):
    """output = a copy of input on the same device."""

    gradient = simple_gradient("Copy", [GO(0)], [GI(0)])


@register_op
class StopGradient(Identity):
    """output = input; autograd does not propagate gradients through it.  May run in place."""

    inplace = {0: 0}
    gradient = None


@register_op
class EnsureCPUOutput(Identity):
    """output = a host (CPU) copy of input, whatever device input lives on."""

    input_device = {0: "any"}
    output_device = "host"
    gradient = None  # the input's device is unknown when the gradient is built

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if not isinstance(x, np.ndarray):  # a device tensor: one device-to-host copy
            return functools.partial(x.copy_to_host, y)
        return super().bind(inputs, outputs)


@register_op
class CopyFromCPUInput(Identity):
    """output = input (a host tensor) copied onto the op's device."""

    input_device = {0: "host"}
    gradient = None


@register_op
class CopyCPUToGPU(Identity):
    """output (on the op's CUDA device) = input (a host tensor).  CUDA-only op."""

    input_device = {0: "host"}
    devices = (CUDA,)
    gradient = simple_gradient("CopyGPUToCPU", [GO(0)], [GI(0)])


@register_op
class CopyGPUToCPU(Identity):
    """output (host) = input (on the op's CUDA device).  CUDA-only op."""

    output_device = "host"
    devices = (CUDA,)
    gradient = simple_gradient("CopyCPUToGPU", [GO(0)], [GI(0)])


PRINT_LIMIT_DEFAULT = 1000  # Caffe2's TensorPrinter shows this many values when limit is 0


def format_tensor(name, value, limit):
    """Caffe2-like one-line rendering of a blob for Print."""
    if not isinstance(value, np.ndarray):
        return f"{name} ({type(value).__name__}): {value!r}"
    flat_values = value.reshape(-1)
    shown = flat_values if limit <= 0 else flat_values[:limit]
    text = ",".join(str(v) for v in shown.tolist())
    more = "" if shown.size == flat_values.size else f",... ({flat_values.size - shown.size} more)"
    return f"{name} of type {value.dtype.name} and shape {list(value.shape)}: {text}{more}"


@register_op
class Print(Operator):
    """Print the input blob (name, dtype, shape, values) to stdout, or append it to
    ``<root_folder>/<blob>.log`` with ``to_file=1``.

    ``limit`` caps the number of values shown (0 = Caffe2's default of 1000); ``every_n``
    prints every n-th run.
    """

    inputs, outputs = ("tensor",), ()
    args = {"to_file": False, "limit": 0, "every_n": 1}
    input_device = {0: "any"}
    gradient = None
    cpu = staticmethod(format_tensor)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [], []

    @staticmethod
    def reference(tensor, **_):
        return ()

    def bind(self, inputs, outputs):
        value = inputs[0]
        name = self.input_names[0]
        limit, every = int(self.args["limit"]) or PRINT_LIMIT_DEFAULT, max(1, int(self.args["every_n"]))
        path = os.path.join(self.ws.root_folder, name.replace("/", "_") + ".log") if self.args["to_file"] else None
        counter = [0]

        def call():
            counter[0] += 1
            if (counter[0] - 1) % every:
                return
            host = value if isinstance(value, np.ndarray) else (
                value.copy_to_host() if hasattr(value, "copy_to_host") else value)
            line = format_tensor(name, host, limit)
            if path is None:
                print(line, flush=True)
            else:
                with open(path, "a") as handle:
                    handle.write(line + "\n")

        return call
