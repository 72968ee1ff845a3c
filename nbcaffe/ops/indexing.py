"""Indexing and shape ops: Squeeze, ExpandDims, Slice, Gather and their gradient ops.

* Squeeze and ExpandDims are shape-only: a copy, or a view when run in place.
* Slice and SliceGradient are strided copies (nbcaffe/ops/_array_util.py): the window of flat
  data that Slice reads, or that SliceGradient writes after zero-filling dData.
* **Gather** and **GatherGradient**: ``@njit`` loops over (outer, axis, inner) views that
  check every index before writing (``@njit`` does no bounds checks) and return the position of
  the first bad one, which the op turns into a ShapeError.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import LAYOUT_CPU, c_strides, copy_window, noop, sequence
from nbcaffe.ops.tensor import ShapeOnly, flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# ----------------------------------------------------------------------- Squeeze / ExpandDims


def clean_dims(dims, what):
    """Caffe2's dims rule: required, non-negative, sorted, duplicates dropped."""
    if not dims:
        raise errors.ArgumentError(f"{what}: argument 'dims' is required (the dims to {what.lower()})")
    dims = sorted(set(int(d) for d in dims))
    if dims[0] < 0:
        raise errors.ArgumentError(f"{what}: dims must be non-negative, got {dims}")
    return dims


def squeeze_shape(shape, dims):
    shape = tuple(shape)
    dims = clean_dims(dims, "Squeeze")
    if dims[-1] >= len(shape):
        raise errors.ShapeError(f"Squeeze: dims {dims} need an input of at least {dims[-1] + 1} dims, got {shape}")
    for d in dims:
        if shape[d] != 1:
            raise errors.ShapeError(f"Squeeze: dim {d} of input {shape} is {shape[d]}, not 1")
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def expand_shape(shape, dims):
    shape = list(shape)
    dims = clean_dims(dims, "ExpandDims")
    if dims[-1] >= len(shape) + len(dims):
        raise errors.ShapeError(
            f"ExpandDims: dims {dims} need an input of at least {dims[-1] + 1 - len(dims)} dims, got {tuple(shape)}")
    for d in dims:
        shape.insert(d, 1)
    return tuple(shape)


@register_op
class Squeeze(ShapeOnly):
    """squeezed = data without the size-1 dims listed in ``dims`` (sorted, duplicates dropped).

    Each listed dim must be 1.  Runs in place (a view, no copy).  Inverse of ExpandDims with the
    same ``dims``; its gradient is ExpandDims.
    """

    inputs, outputs = ("data",), ("squeezed",)
    args = {"dims": Arg("ints", (), "the dims to remove")}
    gradient = simple_gradient("ExpandDims", [GO(0)], [GI(0)])

    def setup(self):
        clean_dims(self.args["dims"], "Squeeze")

    def new_shape(self, inputs):
        return squeeze_shape(inputs[0].shape, self.args["dims"])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [squeeze_shape(shapes[0], args["dims"])], [dtypes[0]]

    @staticmethod
    def reference(data, dims=()):
        return (np.squeeze(data, axis=tuple(sorted(set(dims)))).copy(),)


@register_op
class ExpandDims(ShapeOnly):
    """expanded = data with a size-1 dim inserted at each index of ``dims`` (indices of the output).

    ``dims`` is sorted (duplicates dropped) and inserted in that order.  Runs in place (a view).
    Its gradient is Squeeze.
    """

    inputs, outputs = ("data",), ("expanded",)
    args = {"dims": Arg("ints", (), "output indices of the new dims")}
    gradient = simple_gradient("Squeeze", [GO(0)], [GI(0)])

    def setup(self):
        clean_dims(self.args["dims"], "ExpandDims")

    def new_shape(self, inputs):
        return expand_shape(inputs[0].shape, self.args["dims"])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [expand_shape(shapes[0], args["dims"])], [dtypes[0]]

    @staticmethod
    def reference(data, dims=()):
        return (np.expand_dims(data, axis=tuple(sorted(set(dims)))).copy(),)


# ----------------------------------------------------------------------- Slice


def slice_window(shape, starts, ends, what="Slice"):
    """[(start, end)] per dim with Caffe2's rules: negative values count from one past the end
    (-1 = to the end), values past the end are clamped, dims beyond ``starts`` are whole."""
    shape = tuple(int(d) for d in shape)
    starts, ends = [int(s) for s in starts], [int(e) for e in ends]
    if len(starts) != len(ends):
        raise errors.ShapeError(f"{what}: starts {starts} and ends {ends} must have the same length")
    if len(starts) > len(shape):
        raise errors.ShapeError(
            f"{what}: starts/ends have {len(starts)} entries but data {shape} has {len(shape)} dims")
    window = []
    for d, size in enumerate(shape):
        if d >= len(starts) or size == 0:
            window.append((0, size))
            continue
        s, e = starts[d], ends[d]
        s = s + size + 1 if s < 0 else s
        e = e + size + 1 if e < 0 else e
        s, e = min(s, size), min(e, size)
        if s < 0 or e < 0 or e < s:
            raise errors.ShapeError(
                f"{what}: dim {d} of data {shape}: start {starts[d]} and end {ends[d]} give the empty or reversed"
                f" range [{s}, {e})")
        window.append((s, e))
    return window


class SliceBase(Operator):
    """Shared handling of the starts/ends arguments or host inputs."""

    data_input = 0
    index_inputs = ()  # (starts, ends) input positions when given as inputs

    def setup(self):
        if self.index_inputs:
            if self.args["starts"] is not None or self.args["ends"] is not None:
                raise errors.ArgumentError(f"{self.where()}: starts/ends come from inputs; do not also give them as"
                                           f" arguments")
            self.values_dependent = True
            self.input_device = {**({} if not isinstance(self.input_device, dict) else self.input_device),
                                 self.index_inputs[0]: "host", self.index_inputs[1]: "host"}
        elif self.args["starts"] is None or self.args["ends"] is None:
            raise errors.ArgumentError(f"{self.where()}: give both 'starts' and 'ends' (as arguments or as inputs 1"
                                       f" and 2)")

    def bounds(self, inputs):
        if not self.index_inputs:
            return self.args["starts"], self.args["ends"]
        values = []
        for i in self.index_inputs:
            v = self.read_host(inputs[i])
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
                raise errors.ShapeError(f"{self.type}: input {i} ('{self.input_names[i]}') must be a 1-D int tensor,"
                                        f" got {v.shape} {v.dtype.name}")
            values.append([int(a) for a in v])
        return values[0], values[1]

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        if args["starts"] is None:
            raise UnknownShape()
        return cls.infer(args, shapes, dtypes)


SLICE_ARGS = {"starts": Arg("ints", None, "start index per dim"), "ends": Arg("ints", None, "end index per dim")}


def slice_gradient(op, g_output):
    """SliceGradient(data[, starts, ends], dY) -> dData (Caffe2's GetSliceGradient)."""
    ctx = GradientContext(op, g_output)
    inputs = [I(0), I(1), I(2), GO(0)] if len(op.input) == 3 else [I(0), GO(0)]
    ctx.add("SliceGradient", inputs, [GI(0)])
    return ctx.result()


@register_op
class Slice(SliceBase):
    """output = data[starts[0]:ends[0], starts[1]:ends[1], ...] with Caffe2's index rules.

    starts/ends come from the arguments or from int inputs 1 and 2 (read on the host); dims
    past their length are taken whole.  A negative index i means size + 1 + i, so -1 is "to the
    end"; indices past the end are clamped; an empty-reversed range (end < start) or an index
    before the start raises.  (Caffe2 sliced one dim at a time; nbcaffe slices several.)
    """

    inputs, outputs = ("data", "starts", "ends"), ("output",)
    num_inputs = (1, 3)
    args = dict(SLICE_ARGS)
    gradient = staticmethod(slice_gradient)
    cpu = LAYOUT_CPU

    def setup(self):
        if len(self.input_names) == 2:
            raise errors.SchemaError(f"{self.where()}: Slice takes data alone or data, starts and ends (3 inputs)")
        self.index_inputs = (1, 2) if len(self.input_names) == 3 else ()
        super().setup()

    @staticmethod
    def infer(args, shapes, dtypes):
        window = slice_window(shapes[0], args["starts"], args["ends"])
        return [tuple(e - s for s, e in window)], [dtypes[0]]

    def output_spec(self, inputs):
        window = slice_window(inputs[0].shape, *self.bounds(inputs))
        return [tuple(e - s for s, e in window)], [np.dtype(inputs[0].dtype)]

    @staticmethod
    def reference(data, starts_input=None, ends_input=None, starts=None, ends=None):
        if starts_input is not None:
            starts, ends = list(starts_input), list(ends_input)
        index = []
        for d, size in enumerate(data.shape):
            if d >= len(starts):
                index.append(slice(None))
                continue
            s = starts[d] if starts[d] >= 0 else size + 1 + starts[d]
            e = ends[d] if ends[d] >= 0 else size + 1 + ends[d]
            index.append(slice(min(s, size), min(e, size)))
        return (data[tuple(index)].copy(),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        window = slice_window(x.shape, *self.bounds(inputs))
        xs = c_strides(x.shape)
        offset = sum(s * st for (s, _e), st in zip(window, xs))
        shape = tuple(e - s for s, e in window)
        return copy_window(self.kernel, flat(x), offset, xs, flat(y), 0, c_strides(shape), shape)


@register_op
class SliceGradient(SliceBase):
    """dData = zeros shaped like data, with dY written into the window Slice read.

    Inputs: data (only its shape is read), optional starts and ends, dY; same arguments as Slice.
    """

    inputs, outputs = ("data", "starts", "ends", "dY"), ("dData",)
    num_inputs = (2, 4)
    args = dict(SLICE_ARGS)
    input_device = {0: "any"}
    gradient = None
    cpu = LAYOUT_CPU

    def setup(self):
        if len(self.input_names) == 3:
            raise errors.SchemaError(f"{self.where()}: SliceGradient takes (data, dY) or (data, starts, ends, dY)")
        self.index_inputs = (1, 2) if len(self.input_names) == 4 else ()
        super().setup()

    @staticmethod
    def infer(args, shapes, dtypes):
        window = slice_window(shapes[0], args["starts"], args["ends"], "SliceGradient")
        check_slice_grad(shapes[-1], window, shapes[0])
        return [tuple(shapes[0])], [dtypes[-1]]

    def output_spec(self, inputs):
        window = slice_window(inputs[0].shape, *self.bounds(inputs), "SliceGradient")
        check_slice_grad(inputs[-1].shape, window, inputs[0].shape)
        return [tuple(inputs[0].shape)], [np.dtype(inputs[-1].dtype)]

    @staticmethod
    def reference(data, *rest, starts=None, ends=None):
        dy = rest[-1]
        if len(rest) == 3:
            starts, ends = list(rest[0]), list(rest[1])
        index = []
        for d, size in enumerate(data.shape):
            if d >= len(starts):
                index.append(slice(None))
                continue
            s = starts[d] if starts[d] >= 0 else size + 1 + starts[d]
            e = ends[d] if ends[d] >= 0 else size + 1 + ends[d]
            index.append(slice(min(s, size), min(e, size)))
        dx = np.zeros(data.shape, dy.dtype)
        dx[tuple(index)] = dy
        return (dx,)

    def bind(self, inputs, outputs):
        dy, dx = inputs[-1], outputs[0]
        window = slice_window(inputs[0].shape, *self.bounds(inputs), "SliceGradient")
        xs = c_strides(dx.shape)
        offset = sum(s * st for (s, _e), st in zip(window, xs))
        shape = tuple(e - s for s, e in window)
        dxf = flat(dx)
        copy = copy_window(self.kernel, flat(dy), 0, c_strides(shape), dxf, offset, xs, shape)
        zero = functools.partial(self.kernel.fill, dxf, 0) if dx.size else noop
        return sequence([zero, copy])


def check_slice_grad(dy_shape, window, data_shape):
    expected = tuple(e - s for s, e in window)
    if tuple(dy_shape) != expected:
        raise errors.ShapeError(f"SliceGradient: dY {tuple(dy_shape)} must have the slice's shape {expected}"
                                f" (data {tuple(data_shape)})")


# ----------------------------------------------------------------------- Gather


@numba.njit(cache=True)
def gather_cpu(x, idx, y, wrap):
    """y[o, i, r] = x[o, idx[i], r] for x (outer, D, inner), flat idx (N,), y (outer, N, inner).

    Negative indices count from the end when ``wrap``.  Every index is checked before anything
    is written; returns -1, or the position in idx of the first out-of-range index.
    """
    outer, d, inner = x.shape
    n = idx.size
    for i in range(n):
        j = idx[i]
        if wrap and j < 0:
            j += d
        if j < 0 or j >= d:
            return i
    for o in range(outer):
        for i in range(n):
            j = idx[i]
            if j < 0:
                j += d
            for r in range(inner):
                y[o, i, r] = x[o, j, r]
    return -1


@numba.njit(cache=True)
def gather_grad_cpu(dy, idx, dx, wrap):
    """dx = 0, then dx[o, idx[i], r] += dy[o, i, r] (scatter-add; repeated indices sum).

    dy (outer, N, inner), flat idx (N,), dx (outer, D, inner).  Returns -1 or the position of
    the first out-of-range index (checked before writing).
    """
    outer, d, inner = dx.shape
    n = idx.size
    for i in range(n):
        j = idx[i]
        if wrap and j < 0:
            j += d
        if j < 0 or j >= d:
            return i
    for o in range(outer):
        for j in range(d):
            for r in range(inner):
                dx[o, j, r] = 0
    for o in range(outer):
        for i in range(n):
            j = idx[i]
            if j < 0:
                j += d
            for r in range(inner):
                dx[o, j, r] += dy[o, i, r]
    return -1


GATHER_ARGS = {
    "axis": 0,
    "wrap_indices": Arg("bool", None, "negative indices count from the end (default: only when axis=0)"),
    "dense_gradient": Arg("bool", False, "Caffe2's switch to a dense gradient; nbcaffe's gradient is always dense"),
}


def gather_geometry(data_shape, idx_shape, idx_dtype, axis, what):
    """(canonical axis, outer, D, inner, output shape); Caffe2 keeps DATA's shape when D == 0.

    ``idx_dtype`` is checked when given; static inference passes None, because
    InferShapesAndTypes with dims only types every blob FLOAT (Caffe2's rule).
    """
    data_shape, idx_shape = tuple(data_shape), tuple(idx_shape)
    if idx_dtype is not None and np.dtype(idx_dtype) not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise errors.ShapeError(f"{what}: INDICES must be int32 or int64, got {np.dtype(idx_dtype).name}")
    if not data_shape:
        raise errors.ShapeError(f"{what}: DATA must have at least 1 dim, got a 0-d tensor")
    axis = schema.canonical_axis(axis, len(data_shape), "axis")
    d = data_shape[axis]
    if d == 0:
        out = data_shape  # Caffe2 (empty-batch workflows): the output keeps DATA's shape
    else:
        out = data_shape[:axis] + idx_shape + data_shape[axis + 1:]
    return axis, schema.prod(data_shape[:axis]), d, schema.prod(data_shape[axis + 1:]), out


def wrap_default(args):
    return bool(args["wrap_indices"]) if args["wrap_indices"] is not None else args["axis"] == 0


def raise_bad_index(bad, indices, d, axis, wrap, what, data_shape):
    if bad < 0:
        return
    host = indices if isinstance(indices, np.ndarray) else indices.copy_to_host()
    value = int(host.reshape(-1)[bad])
    allowed = f"[{-d}, {d})" if wrap else f"[0, {d})"
    raise errors.ShapeError(
        f"{what}: INDICES[{bad}] (flat position) = {value} is out of range for DATA {tuple(data_shape)} along axis"
        f" {axis} (size {d}; allowed {allowed}" + ("" if wrap else ", wrap_indices=0") + ")")


@register_op
class Gather(Operator):
    """OUTPUT = DATA indexed along ``axis`` (default 0) by INDICES (int32/int64):
    shape DATA.shape[:axis] + INDICES.shape + DATA.shape[axis+1:].

    Negative indices count from the end when ``wrap_indices`` (default: on for axis 0, as in
    later Caffe2); an index outside the axis raises a ShapeError naming it.  A DATA axis of size
    0 gives an output shaped like DATA (Caffe2's empty-batch rule).  The gradient is dense
    (GatherGradient, a scatter-add) where Caffe2 emitted a sparse GradientSlice (or, with
    ``dense_gradient=1``, a SparseToDense): nbcaffe has no sparse gradients yet.
    """

    inputs, outputs = ("DATA", "INDICES"), ("OUTPUT",)
    args = dict(GATHER_ARGS)
    gradient = simple_gradient("GatherGradient", [I(0), I(1), GO(0)], [GI(0)])
    cpu = staticmethod(gather_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        *_, out = gather_geometry(shapes[0], shapes[1], None, args["axis"], "Gather")
        return [out], [dtypes[0]]

    def output_spec(self, inputs):
        *_, out = gather_geometry(inputs[0].shape, inputs[1].shape, inputs[1].dtype, self.args["axis"], "Gather")
        return [out], [np.dtype(inputs[0].dtype)]

    @staticmethod
    def reference(DATA, INDICES, axis=0, wrap_indices=None, dense_gradient=False):
        axis = axis % DATA.ndim
        d = DATA.shape[axis]
        if d == 0:
            return (DATA.copy(),)
        wrap = wrap_indices if wrap_indices is not None else axis == 0
        idx = INDICES.astype(np.int64)
        if ((idx >= d) | (idx < (-d if wrap else 0))).any():
            raise ValueError("index out of range")
        return (np.take(DATA, np.where(idx < 0, idx + d, idx), axis=axis),)

    def bind(self, inputs, outputs):
        data, idx = inputs
        axis, outer, d, inner, _out = gather_geometry(data.shape, idx.shape, idx.dtype, self.args["axis"], "Gather")
        y = outputs[0]
        if y.size == 0:  # Caffe2 returns before checking indices when there is nothing to copy
            return noop
        wrap = wrap_default(self.args)
        n = int(idx.size)
        x3 = data.reshape(outer, d, inner)
        y3 = y.reshape(outer, n, inner)
        idx_flat = flat(idx)
        kernel = self.kernel
        data_shape = tuple(data.shape)

        def call():
            raise_bad_index(kernel(x3, idx_flat, y3, wrap), idx, d, axis, wrap, "Gather", data_shape)

        return call


@register_op
class GatherGradient(Operator):
    """dDATA = zeros like DATA, then dDATA[.., INDICES[i], ..] += dY[.., i, ..] (repeats sum).

    Inputs DATA (only its shape is read), INDICES, dY; arguments as Gather.  nbcaffe's dense
    replacement for Caffe2's sparse Gather gradient.
    """

    inputs, outputs = ("DATA", "INDICES", "dY"), ("dDATA",)
    args = dict(GATHER_ARGS)
    input_device = {0: "any"}
    gradient = None
    cpu = staticmethod(gather_grad_cpu)

    @staticmethod
    def infer(args, shapes, dtypes, idx_dtype=None):
        *_, out = gather_geometry(shapes[0], shapes[1], idx_dtype, args["axis"], "GatherGradient")
        if tuple(shapes[2]) != tuple(out):
            raise errors.ShapeError(f"GatherGradient: dY {tuple(shapes[2])} must have Gather's output shape {out}"
                                    f" (DATA {tuple(shapes[0])}, INDICES {tuple(shapes[1])})")
        return [tuple(shapes[0])], [dtypes[2]]

    def output_spec(self, inputs):
        return self.infer(self.args, [tuple(x.shape) for x in inputs], [np.dtype(x.dtype) for x in inputs],
                          inputs[1].dtype)

    @staticmethod
    def reference(DATA, INDICES, dY, axis=0, wrap_indices=None, dense_gradient=False):
        axis = axis % DATA.ndim
        d = DATA.shape[axis]
        dx = np.zeros(DATA.shape, dY.dtype)
        if d == 0:
            return (dx,)
        idx = INDICES.reshape(-1).astype(np.int64)
        idx = np.where(idx < 0, idx + d, idx)
        g = dY.reshape(DATA.shape[:axis] + (idx.size,) + DATA.shape[axis + 1:])
        moved = np.moveaxis(dx, axis, 0)
        np.add.at(moved, idx, np.moveaxis(g, axis, 0))
        return (dx,)

    def bind(self, inputs, outputs):
        data, idx, dy = inputs
        axis, outer, d, inner, _out = gather_geometry(data.shape, idx.shape, idx.dtype, self.args["axis"],
                                                      "GatherGradient")
        dx = outputs[0]
        if dx.size == 0:
            return noop
        wrap = wrap_default(self.args)
        n = int(idx.size)
        args = (dy.reshape(outer, n, inner), flat(idx), dx.reshape(outer, d, inner), wrap)
        kernel = self.kernel
        data_shape = tuple(data.shape)

        def call():
            raise_bad_index(kernel(*args), idx, d, axis, wrap, "GatherGradient", data_shape)

        return call
