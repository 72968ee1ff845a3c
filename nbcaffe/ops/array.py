"""Layout and indexing ops: Concat (DepthConcat), Split (DepthSplit), Transpose, NCHW2NHWC,
NHWC2NCHW, ChannelShuffle, PadImage, ResizeNearest, Squeeze, ExpandDims, Slice, Gather, and
their gradient ops.

Kernels come in three shapes:

* **Strided copies** (Concat, Split, Transpose, the order switches, ChannelShuffle, Slice and
  SliceGradient).  Each op describes its work as "copy this strided window of flat X into that
  strided window of flat Y" (element offsets and strides over a shape); :func:`collapse` merges
  dims that are contiguous in both, and the device's ``copy_plan`` turns the description into a
  zero-argument callable once per bind.  On the CPU that callable is ``np.copyto`` between two
  views built at bind time, because NumPy's strided copy was the fastest honest kernel measured
  here: NCHW->NHWC of a (64, 128, 28, 28) float32 tensor took 3.5 ms against 10.6 ms for an
  ``@njit`` loop over the collapsed dims (inner loop on the last dim), (64, 28, 28, 128)->NCHW
  9.8 ms against 13.8 ms, (512, 512).T 0.27 ms against 0.25 ms, and a (4, 3, 8, 8) transpose
  1.3 us against 4.2 us; with the views prebuilt a tiny copy costs 0.45 us per run (1.7 us if the
  views were rebuilt on every run).  On CUDA it is one grid-stride launch that decodes each
  element's index over the collapsed shape.
* **Separable index tables** (PadImage, ResizeNearest and their gradients).  Images are viewed
  as (B, H, W, K) — NCHW as (N*C, H, W, 1), NHWC as is — and the op computes, on the host, the
  source row of every output row and the source column of every output column (-1 = padding
  value).  The forward kernel gathers ``Y[b, i, j, k] = X[b, src_h[i], src_w[j], k]``; the
  gradient kernel sums, for every input pixel, the output positions that read it (the inverse
  tables in CSR form), so it needs no atomics and sums in a fixed order on both devices.  Pad
  modes and the float32 arithmetic of Caffe2's nearest-neighbour index live in one place each
  (:func:`pad_table`, :func:`nearest_table`), not in every kernel.
* **Gather** and **GatherGradient**: ``@njit`` loops over (outer, axis, inner) views that
  check every index before writing (``@njit`` does no bounds checks) and return the position of
  the first bad one, which the op turns into a ShapeError.

Squeeze and ExpandDims are shape-only: a copy, or a view when run in place.

Concat's ``split_info`` output (int32 sizes along the axis) always lives on the host, as in
Caffe2 (its DeviceInferenceFunction puts output 1 on the CPU whatever the op's device); the
Split that Concat's gradient emits reads it there.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, GradientError, I, O, simple_gradient
from nbcaffe.context import CPU_CONTEXT
from nbcaffe.operator import Operator
from nbcaffe.ops.tensor import ShapeOnly, flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# ----------------------------------------------------------------------- shared helpers


def order_axis(order) -> int:
    """Channel axis of a storage order: NCHW -> 1, NHWC -> 3 (Caffe2's GetDimFromOrderString)."""
    if order == "NCHW":
        return 1
    if order == "NHWC":
        return 3
    raise errors.ArgumentError(f"order must be 'NCHW' or 'NHWC', got {order!r}")


def check_order(order) -> str:
    order_axis(order)
    return order


def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    strides = []
    step = 1
    for d in reversed(tuple(shape)):
        strides.append(step)
        step *= int(d)
    return tuple(reversed(strides))


def collapse(shape, *strides):
    """Drop size-1 dims and merge neighbours that are contiguous in every strides list.

    Returns ``(shape, strides_0, strides_1, ...)`` as tuples (at least one dim).
    """
    dims = [(int(n), [int(s[d]) for s in strides]) for d, n in enumerate(shape) if int(n) != 1]
    merged = []
    for n, ss in dims:
        if merged:
            pn, pss = merged[-1]
            if all(p == q * n for p, q in zip(pss, ss)):
                merged[-1] = (pn * n, ss)
                continue
        merged.append((n, ss))
    if not merged:
        merged = [(1, [1] * len(strides))]
    out_shape = tuple(n for n, _ in merged)
    return (out_shape,) + tuple(tuple(ss[k] for _, ss in merged) for k in range(len(strides)))


def _noop():
    pass


class LayoutKernels:
    """Kernels of the strided-copy ops (same slot on every device).

    ``copy_plan(x, x_offset, x_strides, y, y_offset, y_strides, shape)``: x and y are flat
    arrays; returns a zero-argument callable that writes ``y[y_offset + k·y_strides] =
    x[x_offset + k·x_strides]`` for every index k over ``shape`` (element units).
    ``fill(y, value)``: sets every element of flat y to value.
    """

    __slots__ = ("copy_plan", "fill")

    def __init__(self, copy_plan, fill):
        self.copy_plan = copy_plan
        self.fill = fill


def strided_copy_plan_cpu(x, x_offset, x_strides, y, y_offset, y_strides, shape):
    """np.copyto between two strided views of flat x and y built once (see the module notes)."""
    if schema.prod(shape) == 0:
        return _noop
    as_strided = np.lib.stride_tricks.as_strided
    src = as_strided(x[x_offset:], shape=tuple(shape), strides=tuple(s * x.itemsize for s in x_strides))
    dst = as_strided(y[y_offset:], shape=tuple(shape), strides=tuple(s * y.itemsize for s in y_strides))
    return functools.partial(np.copyto, dst, src)


def fill_cpu(y, value):
    """y[:] = value over flat y."""
    y.fill(value)


LAYOUT_CPU = LayoutKernels(strided_copy_plan_cpu, fill_cpu)


def copy_window(kernel, x, x_offset, x_strides, y, y_offset, y_strides, shape):
    """``kernel.copy_plan`` after collapsing the dims (x and y are flat)."""
    shape, x_strides, y_strides = collapse(shape, x_strides, y_strides)
    return kernel.copy_plan(x, int(x_offset), x_strides, y, int(y_offset), y_strides, shape)


def copy_permuted(kernel, x, y, axes):
    """Plan ``y = x.transpose(axes)`` for C-contiguous x and y."""
    xs = c_strides(x.shape)
    out_shape = tuple(int(x.shape[a]) for a in axes)
    return copy_window(kernel, flat(x), 0, [xs[a] for a in axes], flat(y), 0, c_strides(out_shape), out_shape)


def _sequence(calls):
    calls = [c for c in calls if c is not _noop]
    if not calls:
        return _noop
    if len(calls) == 1:
        return calls[0]

    def run():
        for call in calls:
            call()

    return run


def _copy_named_args(grad_def, op_def, names):
    """Append the forward op's Argument protos called ``names`` to a gradient OperatorDef."""
    for arg in op_def.arg:
        if arg.name in names:
            grad_def.arg.add().CopyFrom(arg)


def _given(args):
    return getattr(args, "given", set())


# ----------------------------------------------------------------------- Concat / Split

AXIS_ARGS = {
    "axis": Arg("int", None, "axis to work on (negative counts from the end); default: from order"),
    "order": Arg("str", "NCHW", "NCHW (axis 1) or NHWC (axis 3) when axis is not given"),
    "add_axis": Arg("bool", False, "Concat stacks on a new axis / Split removes it (needs axis)"),
}


def resolve_axis(args, ndim, what):
    """(canonical axis, add_axis) for Concat (``what='Concat'``) or Split.

    Caffe2's rule: ``axis`` and ``order`` are exclusive; without ``axis`` the channel axis of
    ``order`` is used and add_axis is off.  Concat's axis may be ``ndim`` with add_axis.
    """
    if args["axis"] is not None and "order" in _given(args):
        raise errors.ArgumentError(f"{what}: give either 'axis' or 'order', not both")
    if args["axis"] is None:
        if args["add_axis"]:
            raise errors.ArgumentError(f"{what}: add_axis=1 needs an explicit 'axis'")
        axis = order_axis(args["order"])
        if axis >= ndim:
            raise errors.ShapeError(
                f"{what}: order={args['order']} means axis {axis}, but the input is {ndim}-d; give 'axis'")
        return axis, False
    add = bool(args["add_axis"])
    adjusted = ndim + (1 if add and what == "Concat" else 0)
    return schema.canonical_axis(args["axis"], adjusted), add


def check_axis_args(op):
    """Creation-time check of axis / order / add_axis (Concat and Split)."""
    args = op.args
    if args["axis"] is not None and "order" in args.given:
        raise errors.ArgumentError(f"{op.where()}: give either 'axis' or 'order', not both")
    if args["axis"] is None:
        if args["add_axis"]:
            raise errors.ArgumentError(f"{op.where()}: add_axis=1 needs an explicit 'axis'")
        try:
            check_order(args["order"])
        except errors.ArgumentError as exc:
            raise errors.ArgumentError(f"{op.where()}: {exc}") from None


def concat_shapes(args, shapes, dtypes):
    """(axis, add_axis, sizes along the axis, output shape) with every input checked."""
    if not shapes:
        raise errors.ShapeError("Concat needs at least one input")
    first = tuple(shapes[0])
    axis, add = resolve_axis(args, len(first), "Concat")
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        shape = tuple(shape)
        if dtype != dtypes[0]:
            raise errors.ShapeError(
                f"Concat: input {i} is {np.dtype(dtype).name} but input 0 is {np.dtype(dtypes[0]).name}; all"
                f" inputs must have the same dtype")
        same = shape == first if add else (
            len(shape) == len(first) and all(a == b for d, (a, b) in enumerate(zip(shape, first)) if d != axis))
        if not same:
            rule = "the same shape (add_axis=1)" if add else f"the same shape except along axis {axis}"
            raise errors.ShapeError(f"Concat: input {i} {shape} and input 0 {first} must have {rule}")
    if add:
        sizes = [1] * len(shapes)
        out = first[:axis] + (len(shapes),) + first[axis:]
    else:
        sizes = [int(tuple(s)[axis]) for s in shapes]
        out = first[:axis] + (sum(sizes),) + first[axis + 1:]
    return axis, add, sizes, out


def concat_gradient(op, g_output):
    """Caffe2's GetConcatGradient: Split(dY, split_info) -> one gradient per input (axis,
    order and add_axis copied).  A blob fed twice gets a second, distinct gradient name so that
    autograd sums the two parts."""
    ctx = GradientContext(op, g_output)
    if not ctx.has_GO(0):
        return ctx.result()
    if len(op.output) < 2:
        raise GradientError(
            f"Concat: its gradient is a Split fed by the split_info output; give the Concat op a second"
            f" output (e.g. net.Concat({list(op.input)}, ['{op.output[0]}', '{op.output[0]}_split_info']))")
    outs = []
    seen = set()
    for i, name in enumerate(op.input):
        if name in seen:
            ctx.alias(i, f"_{name}_grad_concat_{i}")
            outs.append(ctx.g_input[i])
        else:
            outs.append(GI(i))
        seen.add(name)
    grad = ctx.add("Split", [GO(0), O(1)], outs, copy_arguments=False)
    _copy_named_args(grad, op, ("axis", "order", "add_axis"))
    return ctx.result()


@register_op(aliases=("DepthConcat",))
class Concat(Operator):
    """concat_result = the inputs joined along ``axis``; split_info = their sizes along it.

    ``axis`` (negative counts from the end) or ``order`` (NCHW -> 1, NHWC -> 3; default NCHW)
    picks the axis, not both.  ``add_axis=1`` (with ``axis``) stacks the inputs on a new axis
    at that position (split_info is then all ones).  Inputs must share dtype and every dim but
    the axis.  split_info (int32, one entry per input) always lives on the host, as in Caffe2;
    it is optional here but the gradient (a Split fed by it) needs it.  DepthConcat is the
    legacy name.
    """

    inputs, outputs = ("X0", "X1, ..."), ("concat_result", "split_info")
    num_inputs = (1, None)
    num_outputs = (1, 2)
    args = dict(AXIS_ARGS)
    # Caffe2 copies every forward argument into gradient ops: the Concat that a Caffe2 Split's
    # gradient emits carries Split's `split`, which Concat ignored.
    ignored_args = ("split",)
    gradient = staticmethod(concat_gradient)
    cpu = LAYOUT_CPU

    def setup(self):
        check_axis_args(self)

    @staticmethod
    def infer(args, shapes, dtypes):
        _axis, _add, sizes, out = concat_shapes(args, shapes, dtypes)
        return [out, (len(sizes),)], [dtypes[0], np.dtype(np.int32)]

    def output_context(self, j):
        return CPU_CONTEXT if j == 1 else self.ctx

    @staticmethod
    def reference(*inputs, axis=None, order="NCHW", add_axis=False):
        if axis is None:
            axis = 1 if order == "NCHW" else 3
        if add_axis:
            return np.stack(inputs, axis=axis), np.ones(len(inputs), np.int32)
        y = np.concatenate(inputs, axis=axis)
        return y, np.array([x.shape[axis] for x in inputs], np.int32)

    def bind(self, inputs, outputs):
        shapes = [tuple(x.shape) for x in inputs]
        axis, add, sizes, out = concat_shapes(self.args, shapes, [x.dtype for x in inputs])
        first = shapes[0]
        before = schema.prod(first[:axis])
        after = schema.prod(first[axis:]) if add else schema.prod(first[axis + 1:])
        total = sum(sizes)
        y = flat(outputs[0])
        plans = []
        offset = 0
        for x, size in zip(inputs, sizes):
            plans.append(copy_window(self.kernel, flat(x), 0, (size * after, 1), y, offset * after,
                                     (total * after, 1), (before, size * after)))
            offset += size
        copy = _sequence(plans)
        if len(outputs) < 2:
            return copy
        split_info, values = outputs[1], np.asarray(sizes, np.int32)

        def call():
            copy()
            split_info[...] = values

        return call


def split_sizes(args, dim, n_out, split, what="Split"):
    """Sizes of the outputs along the axis: ``split`` (arg or input values), or equal parts."""
    if args["add_axis"]:
        if n_out != dim:
            raise errors.ShapeError(
                f"{what}: add_axis=1 removes the axis, so the number of outputs ({n_out}) must equal its"
                f" size ({dim})")
        return [1] * n_out
    if not split:
        if n_out == 0 or dim % n_out:
            raise errors.ShapeError(
                f"{what}: without 'split' the axis size {dim} must divide evenly into {n_out} outputs")
        return [dim // n_out] * n_out
    split = [int(s) for s in split]
    if len(split) != n_out:
        raise errors.ShapeError(f"{what}: split {split} has {len(split)} entries but the op has {n_out} outputs")
    if any(s < 0 for s in split):
        raise errors.ShapeError(f"{what}: split {split} has a negative size")
    if sum(split) != dim:
        raise errors.ShapeError(f"{what}: split {split} sums to {sum(split)} but the axis has size {dim}")
    return split


def split_shapes(args, shape, n_out, split):
    shape = tuple(shape)
    axis, add = resolve_axis(args, len(shape), "Split")
    sizes = split_sizes(args, shape[axis], n_out, split)
    if add:
        outs = [shape[:axis] + shape[axis + 1:]] * n_out
    else:
        outs = [shape[:axis] + (s,) + shape[axis + 1:] for s in sizes]
    return axis, add, sizes, outs


def split_gradient(op, g_output):
    """Concat of the output gradients -> [input gradient, '_<input>_grad_dims'] (Caffe2's
    GetSplitGradient).  Caffe2 left out outputs without a gradient, which gave the input
    gradient the wrong shape; here they contribute zeros shaped and typed like the output
    (ConstantFill, then Cast to the output's dtype)."""
    ctx = GradientContext(op, g_output)
    parts = []
    for j, out in enumerate(op.output):
        if ctx.has_GO(j):
            parts.append(GO(j))
            continue
        zeros = f"_{out}_zero_grad"
        ctx.add("ConstantFill", [O(j)], [zeros + "_float"], copy_arguments=False, value=0.0)
        ctx.add("Cast", [zeros + "_float", O(j)], [zeros], copy_arguments=False)
        parts.append(zeros)
    grad = ctx.add("Concat", parts, [GI(0), f"_{op.input[0]}_grad_dims"], copy_arguments=False)
    _copy_named_args(grad, op, ("axis", "order", "add_axis"))
    return ctx.result()


@register_op(aliases=("DepthSplit",))
class Split(Operator):
    """output_i = the i-th consecutive piece of input along ``axis``, of size split[i].

    Sizes come from argument ``split``, or from the optional int input ``split`` (read on the
    host), or are equal parts.  ``axis``/``order`` as in Concat; ``add_axis=1`` (with ``axis``)
    removes the axis instead: one output per index along it.  DepthSplit is the legacy name.
    """

    inputs, outputs = ("input", "split"), ("output_0", "output_1, ...")
    num_inputs = (1, 2)
    num_outputs = (1, None)
    args = {**AXIS_ARGS, "split": Arg("ints", (), "size of each output along the axis")}
    input_device = {1: "host"}
    gradient = staticmethod(split_gradient)
    cpu = LAYOUT_CPU

    def setup(self):
        check_axis_args(self)
        if len(self.input_names) == 2:
            if self.args["split"]:
                raise errors.ArgumentError(
                    f"{self.where()}: the sizes come from input 1 '{self.input_names[1]}'; do not also give"
                    f" argument 'split'")
            self.values_dependent = True

    @staticmethod
    def infer(args, shapes, dtypes):
        raise NotImplementedError  # output_spec / static_infer (the op's output count matters)

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        if len(shapes) == 2:
            raise UnknownShape()
        _axis, _add, _sizes, outs = split_shapes(args, shapes[0], len(op_def.output), args["split"])
        return outs, [dtypes[0]] * len(outs)

    def split_values(self, inputs):
        if len(inputs) < 2:
            return self.args["split"]
        values = self.read_host(inputs[1])
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise errors.ShapeError(f"Split: input 1 (split) must be a 1-D int tensor, got {values.shape}"
                                    f" {values.dtype.name}")
        return [int(v) for v in values]

    def output_spec(self, inputs):
        _axis, _add, _sizes, outs = split_shapes(self.args, inputs[0].shape, len(self.output_names),
                                                 self.split_values(inputs))
        return outs, [np.dtype(inputs[0].dtype)] * len(outs)

    def reference_kwargs(self):
        return {**super().reference_kwargs(), "num_outputs": len(self.output_names)}

    @staticmethod
    def reference(input, split_input=None, axis=None, order="NCHW", add_axis=False, split=(), num_outputs=1):
        if axis is None:
            axis = 1 if order == "NCHW" else 3
        if add_axis:
            return tuple(np.take(input, i, axis=axis) for i in range(input.shape[axis]))
        sizes = list(split_input) if split_input is not None else list(split)
        if not sizes:  # equal parts
            return tuple(np.split(input, num_outputs, axis=axis))
        return tuple(np.split(input, np.cumsum(sizes)[:-1], axis=axis))

    def bind(self, inputs, outputs):
        x = inputs[0]
        shape = tuple(x.shape)
        axis, add, sizes, _outs = split_shapes(self.args, shape, len(outputs), self.split_values(inputs))
        before = schema.prod(shape[:axis])
        dim = shape[axis]
        after = schema.prod(shape[axis + 1:])
        xf = flat(x)
        plans = []
        offset = 0
        for y, size in zip(outputs, sizes):
            plans.append(copy_window(self.kernel, xf, offset * after, (dim * after, 1), flat(y), 0,
                                     (size * after, 1), (before, size * after)))
            offset += size
        return _sequence(plans)


# ----------------------------------------------------------------------- permutations


def transpose_axes(axes, ndim):
    """The permutation Transpose applies: ``axes``, or reversed dims when empty."""
    if not axes:
        return tuple(range(ndim - 1, -1, -1))
    if len(axes) != ndim:
        raise errors.ShapeError(f"Transpose: axes {tuple(axes)} has {len(axes)} entries but the input is {ndim}-d")
    return tuple(axes)


def transpose_gradient(op, g_output):
    """Transpose dY with the inverse permutation (Caffe2's GetTransposeGradient)."""
    ctx = GradientContext(op, g_output)
    axes = next((tuple(a.ints) for a in op.arg if a.name == "axes"), ())
    if not axes:
        ctx.add("Transpose", [GO(0)], [GI(0)])
        return ctx.result()
    if sorted(axes) != list(range(len(axes))):
        raise GradientError(f"Transpose: axes {axes} is not a permutation of 0..{len(axes) - 1}")
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    ctx.add("Transpose", [GO(0)], [GI(0)], axes=inverse)
    return ctx.result()


class Permute(Operator):
    """Base of the ops whose output is a permutation of the input's dims (a strided copy)."""

    inputs, outputs = ("data",), ("output",)
    cpu = LAYOUT_CPU

    @classmethod
    def permutation(cls, args, ndim) -> tuple:
        raise NotImplementedError

    @classmethod
    def infer(cls, args, shapes, dtypes):
        shape = tuple(shapes[0])
        axes = cls.permutation(args, len(shape))
        return [tuple(shape[a] for a in axes)], [dtypes[0]]

    def bind(self, inputs, outputs):
        return copy_permuted(self.kernel, inputs[0], outputs[0], self.permutation(self.args, len(inputs[0].shape)))


@register_op
class Transpose(Permute):
    """transposed = data with its dims permuted by ``axes`` (default: reversed), like np.transpose.

    ``axes`` must be a permutation of 0..ndim-1.  Gradient: Transpose with the inverse permutation.
    """

    outputs = ("transposed",)
    args = {"axes": Arg("ints", (), "permutation of the dims; empty = reverse")}
    gradient = staticmethod(transpose_gradient)

    def setup(self):
        axes = self.args["axes"]
        if axes and sorted(axes) != list(range(len(axes))):
            raise errors.ArgumentError(
                f"{self.where()}: axes {tuple(axes)} must be a permutation of 0..{len(axes) - 1}")

    @classmethod
    def permutation(cls, args, ndim):
        return transpose_axes(args["axes"], ndim)

    @staticmethod
    def reference(data, axes=()):
        return (np.ascontiguousarray(np.transpose(data, axes or None)),)


def _order_switch_check(ndim, name):
    if ndim < 3:
        raise errors.ShapeError(f"{name} needs an input of at least 3 dims (N, C, spatial...), got {ndim}-d")


@register_op
class NCHW2NHWC(Permute):
    """output = data moved from N C H1..Hk to N H1..Hk C (k >= 1).  Gradient: NHWC2NCHW."""

    gradient = simple_gradient("NHWC2NCHW", [GO(0)], [GI(0)])

    @classmethod
    def permutation(cls, args, ndim):
        _order_switch_check(ndim, "NCHW2NHWC")
        return (0,) + tuple(range(2, ndim)) + (1,)

    @staticmethod
    def reference(data):
        return (np.ascontiguousarray(np.moveaxis(data, 1, -1)),)


@register_op
class NHWC2NCHW(Permute):
    """output = data moved from N H1..Hk C to N C H1..Hk (k >= 1).  Gradient: NCHW2NHWC."""

    gradient = simple_gradient("NCHW2NHWC", [GO(0)], [GI(0)])

    @classmethod
    def permutation(cls, args, ndim):
        _order_switch_check(ndim, "NHWC2NCHW")
        return (0, ndim - 1) + tuple(range(1, ndim - 1))

    @staticmethod
    def reference(data):
        return (np.ascontiguousarray(np.moveaxis(data, -1, 1)),)


SHUFFLE_ARGS = {"group": 1, "order": "NCHW"}


def shuffle_geometry(args, shape, what):
    """(outer, C, inner) of the channel view and the group count, checked."""
    shape = tuple(shape)
    order = check_order(args["order"])
    group = int(args["group"])
    if group < 1:
        raise errors.ArgumentError(f"{what}: group must be >= 1, got {group}")
    if len(shape) < 2:
        raise errors.ShapeError(f"{what} needs an input of at least 2 dims (N, C, ...), got {shape}")
    axis = 1 if order == "NCHW" else len(shape) - 1
    c = shape[axis]
    if c % group:
        raise errors.ShapeError(f"{what}: {c} channels (input {shape}, order {order}) do not split into group={group}")
    return schema.prod(shape[:axis]), c, schema.prod(shape[axis + 1:]), group


def channel_shuffle_plan(kernel, args, x, y, what, inverse):
    """Y channel k*G + g = X channel g*K + k (G groups of K): X viewed as (outer, G, K, inner)
    transposed to (outer, K, G, inner); the gradient swaps G and K."""
    outer, c, inner, group = shuffle_geometry(args, x.shape, what)
    rows = c // group if inverse else group
    cols = c // rows
    shape = (outer, cols, rows, inner)
    x_strides = (c * inner, inner, cols * inner, 1)
    return copy_window(kernel, flat(x), 0, x_strides, flat(y), 0, c_strides(shape), shape)


@register_op
class ChannelShuffle(Operator):
    """Y[:, k*G + g] = X[:, g*K + k] for G = ``group`` groups of K = C/G channels (ShuffleNet).

    ``order`` NCHW (channels = dim 1) or NHWC (channels = last dim); any number of spatial dims.
    """

    inputs, outputs = ("X",), ("Y",)
    args = dict(SHUFFLE_ARGS)
    gradient = simple_gradient("ChannelShuffleGradient", [GO(0)], [GI(0)])
    cpu = LAYOUT_CPU

    @staticmethod
    def infer(args, shapes, dtypes):
        shuffle_geometry(args, shapes[0], "ChannelShuffle")
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(X, group=1, order="NCHW"):
        moved = X if order == "NCHW" else np.moveaxis(X, -1, 1)
        n, c = moved.shape[:2]
        shuffled = moved.reshape((n, group, c // group) + moved.shape[2:]).swapaxes(1, 2).reshape(moved.shape)
        return (np.ascontiguousarray(shuffled if order == "NCHW" else np.moveaxis(shuffled, 1, -1)),)

    def bind(self, inputs, outputs):
        return channel_shuffle_plan(self.kernel, self.args, inputs[0], outputs[0], "ChannelShuffle", False)


@register_op
class ChannelShuffleGradient(Operator):
    """dX[:, g*K + k] = dY[:, k*G + g]: the inverse channel permutation of ChannelShuffle."""

    inputs, outputs = ("dY",), ("dX",)
    args = dict(SHUFFLE_ARGS)
    gradient = None
    cpu = LAYOUT_CPU

    @staticmethod
    def infer(args, shapes, dtypes):
        shuffle_geometry(args, shapes[0], "ChannelShuffleGradient")
        return [tuple(shapes[0])], [dtypes[0]]

    @staticmethod
    def reference(dY, group=1, order="NCHW"):
        moved = dY if order == "NCHW" else np.moveaxis(dY, -1, 1)
        n, c = moved.shape[:2]
        back = moved.reshape((n, c // group, group) + moved.shape[2:]).swapaxes(1, 2).reshape(moved.shape)
        return (np.ascontiguousarray(back if order == "NCHW" else np.moveaxis(back, 1, -1)),)

    def bind(self, inputs, outputs):
        return channel_shuffle_plan(self.kernel, self.args, inputs[0], outputs[0], "ChannelShuffleGradient", True)


# ----------------------------------------------------------------------- separable index kernels


@numba.njit(cache=True)
def index_gather_2d_cpu(x, y, src_h, src_w, value):
    """y[b, i, j, k] = x[b, src_h[i], src_w[j], k], or value where src_h[i] or src_w[j] is -1.

    x (B, H, W, K) and y (B, OH, OW, K) C-contiguous; tables hold valid indices or -1.
    """
    nb, oh, ow, nk = y.shape
    if nk == 1:
        # NCHW images (K = 1): 3-D indexing and whole padded rows measured 3-4.5x faster than
        # the general loop (pad 2 of (32, 64, 28, 28): 4.6 -> 1.5 ms; np.pad takes 3.4 ms)
        x3 = x.reshape((nb, x.shape[1], x.shape[2]))
        y3 = y.reshape((nb, oh, ow))
        for b in range(nb):
            for i in range(oh):
                h = src_h[i]
                if h < 0:
                    for j in range(ow):
                        y3[b, i, j] = value
                    continue
                for j in range(ow):
                    w = src_w[j]
                    y3[b, i, j] = value if w < 0 else x3[b, h, w]
        return
    for b in range(nb):
        for i in range(oh):
            h = src_h[i]
            for j in range(ow):
                w = src_w[j]
                if h < 0 or w < 0:
                    for k in range(nk):
                        y[b, i, j, k] = value
                else:
                    for k in range(nk):
                        y[b, i, j, k] = x[b, h, w, k]


@numba.njit(cache=True)
def index_sum_2d_cpu(dy, dx, h_start, h_pos, w_start, w_pos):
    """dx[b, h, w, k] = sum of dy[b, i, j, k] over i in h_pos[h_start[h]:h_start[h + 1]] and
    j in w_pos[w_start[w]:w_start[w + 1]] (the output positions that read input pixel (h, w)).

    dy (B, OH, OW, K), dx (B, H, W, K) C-contiguous; h_start (H + 1,), w_start (W + 1,).
    """
    nb, nh, nw, nk = dx.shape
    if nk == 1:  # NCHW images: 3-D indexing (1.2x the general loop)
        dy3 = dy.reshape((nb, dy.shape[1], dy.shape[2]))
        dx3 = dx.reshape((nb, nh, nw))
        for b in range(nb):
            for h in range(nh):
                for w in range(nw):
                    acc = 0.0
                    for a in range(h_start[h], h_start[h + 1]):
                        i = h_pos[a]
                        for c in range(w_start[w], w_start[w + 1]):
                            acc += dy3[b, i, w_pos[c]]
                    dx3[b, h, w] = acc
        return
    for b in range(nb):
        for h in range(nh):
            for w in range(nw):
                for k in range(nk):
                    acc = 0.0
                    for a in range(h_start[h], h_start[h + 1]):
                        i = h_pos[a]
                        for c in range(w_start[w], w_start[w + 1]):
                            acc += dy[b, i, w_pos[c], k]
                    dx[b, h, w, k] = acc


def inverse_table(src, size):
    """CSR inverse of an index table: (start (size + 1,), positions) such that the output
    positions p with src[p] == h are positions[start[h]:start[h + 1]], ascending."""
    src = np.asarray(src, np.int64)
    valid = np.flatnonzero(src >= 0)
    order = np.argsort(src[valid], kind="stable")
    positions = valid[order].astype(np.int64)
    counts = np.bincount(src[valid], minlength=size)[:size]
    start = np.zeros(size + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    return start, positions


def image_view(a, order):
    """A (B, H, W, K) view of a 4-D image: NCHW -> (N*C, H, W, 1), NHWC as is."""
    shape = tuple(a.shape)
    if order == "NCHW":
        return a.reshape(shape[0] * shape[1], shape[2], shape[3], 1)
    return a


def spatial(shape, order):
    """(N, C, H, W) of a 4-D image shape in ``order``."""
    n, a, b, c = tuple(shape)
    return (n, a, b, c) if order == "NCHW" else (n, c, a, b)


def image_shape(n, c, h, w, order):
    return (n, c, h, w) if order == "NCHW" else (n, h, w, c)


def check_image(shape, what):
    if len(tuple(shape)) != 4:
        raise errors.ShapeError(f"{what} needs a 4-D image (N, C, H, W or N, H, W, C), got {tuple(shape)}")


# ----------------------------------------------------------------------- PadImage

PAD_MODES = ("constant", "reflect", "edge")
PAD_ARGS = {
    "pad": Arg("int", None, "the same padding on all four sides"),
    "pad_t": Arg("int", None, "top padding (with pad_l, pad_b, pad_r)"),
    "pad_l": Arg("int", None, "left padding"),
    "pad_b": Arg("int", None, "bottom padding"),
    "pad_r": Arg("int", None, "right padding"),
    "pads": Arg("ints", None, "[top, left, bottom, right]"),
    "mode": Arg("str", "constant", "constant | reflect | edge"),
    "order": Arg("str", "NCHW", "NCHW or NHWC"),
}


def resolve_pads(args) -> tuple:
    """(top, left, bottom, right) from ``pad``, ``pad_t``..``pad_r`` or ``pads`` (one form only)."""
    named = [k for k in ("pad_t", "pad_l", "pad_b", "pad_r") if args[k] is not None]
    forms = [f for f, on in (("pad", args["pad"] is not None), ("pad_t/pad_l/pad_b/pad_r", bool(named)),
                             ("pads", args["pads"] is not None)) if on]
    if len(forms) > 1:
        raise errors.ArgumentError(f"PadImage: give the padding one way, not as {' and '.join(forms)}")
    if args["mode"] not in PAD_MODES:
        raise errors.ArgumentError(f"PadImage: mode must be one of {', '.join(PAD_MODES)}, got {args['mode']!r}")
    check_order(args["order"])
    if args["pad"] is not None:
        pads = (args["pad"],) * 4
    elif named:
        missing = [k for k in ("pad_t", "pad_l", "pad_b", "pad_r") if args[k] is None]
        if missing:
            raise errors.ArgumentError(
                f"PadImage: pad_t, pad_l, pad_b and pad_r go together; missing {', '.join(missing)}")
        pads = (args["pad_t"], args["pad_l"], args["pad_b"], args["pad_r"])
    elif args["pads"] is not None:
        pads = tuple(args["pads"])
        if len(pads) != 4:
            raise errors.ArgumentError(f"PadImage: pads must be [top, left, bottom, right], got {list(pads)}")
    else:
        pads = (0, 0, 0, 0)
    if any(p < 0 for p in pads):
        raise errors.ArgumentError(f"PadImage: paddings must be >= 0, got (t, l, b, r) = {pads}")
    return tuple(int(p) for p in pads)


def check_pad_fits(h, w, pads, mode, what, shape):
    t, left, b, r = pads
    if mode == "reflect" and (max(t, b) >= h or max(left, r) >= w):
        raise errors.ShapeError(
            f"{what}: reflect padding (t, l, b, r) = {pads} must be smaller than the image ({h} x {w}) in"
            f" each direction (input {tuple(shape)})")
    if mode == "edge" and any(pads) and (h == 0 or w == 0):
        raise errors.ShapeError(f"{what}: edge padding needs a non-empty image, got {tuple(shape)}")


def pad_table(size, head, tail, mode):
    """Source index of every padded position along one axis (-1 = the constant value)."""
    pos = np.arange(-head, size + tail, dtype=np.int64)
    if mode == "constant":
        return np.where((pos >= 0) & (pos < size), pos, -1)
    if mode == "edge":
        return np.clip(pos, 0, max(size - 1, 0))
    # reflect about the first and last element without repeating them (Caffe2, np.pad 'reflect')
    pos = np.abs(pos)
    return np.minimum(pos, 2 * size - pos - 2)


def pad_tables(pads, h, w, mode):
    t, left, b, r = pads
    return pad_table(h, t, b, mode), pad_table(w, left, r, mode)


@register_op
class PadImage(Operator):
    """Y = X with its H and W borders padded by (top, left, bottom, right).

    Paddings come from ``pad`` (all sides), ``pad_t``/``pad_l``/``pad_b``/``pad_r`` or ``pads``
    [t, l, b, r] (default 0, never negative).  ``mode``: constant (``value``, default 0),
    reflect (mirror without repeating the edge; each padding must be smaller than the image)
    or edge (repeat the border).  X is 4-D in ``order`` NCHW (default) or NHWC.
    """

    inputs, outputs = ("X",), ("Y",)
    args = {**PAD_ARGS, "value": 0.0}
    gradient = simple_gradient("PadImageGradient", [GO(0)], [GI(0)])
    cpu = staticmethod(index_gather_2d_cpu)

    def setup(self):
        resolve_pads(self.args)

    @staticmethod
    def infer(args, shapes, dtypes):
        pads = resolve_pads(args)
        check_image(shapes[0], "PadImage")
        n, c, h, w = spatial(shapes[0], args["order"])
        check_pad_fits(h, w, pads, args["mode"], "PadImage", shapes[0])
        return [image_shape(n, c, h + pads[0] + pads[2], w + pads[1] + pads[3], args["order"])], [dtypes[0]]

    @staticmethod
    def reference(X, pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None, pads=None, mode="constant",
                  order="NCHW", value=0.0):
        if pad is not None:
            t = left = b = r = pad
        elif pad_t is not None:
            t, left, b, r = pad_t, pad_l, pad_b, pad_r
        else:
            t, left, b, r = pads if pads is not None else (0, 0, 0, 0)
        widths = [(0, 0), (0, 0), (t, b), (left, r)] if order == "NCHW" else [(0, 0), (t, b), (left, r), (0, 0)]
        if mode == "constant":
            return (np.pad(X, widths, mode="constant", constant_values=value),)
        return (np.pad(X, widths, mode=mode),)

    def bind(self, inputs, outputs):
        order = self.args["order"]
        x, y = inputs[0], outputs[0]
        _n, _c, h, w = spatial(x.shape, order)
        src_h, src_w = pad_tables(resolve_pads(self.args), h, w, self.args["mode"])
        xv, yv = image_view(x, order), image_view(y, order)
        if yv.size == 0:
            return _noop
        return functools.partial(self.kernel, xv, yv, self.ctx.from_host(src_h), self.ctx.from_host(src_w),
                                 float(self.args["value"]))


@register_op
class PadImageGradient(Operator):
    """dX[h, w] = sum of dY over the padded positions that copied X[h, w] (PadImage's adjoint).

    Same arguments as PadImage (``value`` is accepted and unused); dX is dY without the padding.
    """

    inputs, outputs = ("dY",), ("dX",)
    args = {**PAD_ARGS, "value": 0.0}
    gradient = None
    cpu = staticmethod(index_sum_2d_cpu)

    def setup(self):
        resolve_pads(self.args)

    @staticmethod
    def infer(args, shapes, dtypes):
        pads = resolve_pads(args)
        check_image(shapes[0], "PadImageGradient")
        n, c, ph, pw = spatial(shapes[0], args["order"])
        h, w = ph - pads[0] - pads[2], pw - pads[1] - pads[3]
        if h < 0 or w < 0:
            raise errors.ShapeError(f"PadImageGradient: dY {tuple(shapes[0])} is smaller than the padding"
                                    f" (t, l, b, r) = {pads}")
        check_pad_fits(h, w, pads, args["mode"], "PadImageGradient", shapes[0])
        return [image_shape(n, c, h, w, args["order"])], [dtypes[0]]

    @staticmethod
    def reference(dY, pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None, pads=None, mode="constant",
                  order="NCHW", value=0.0):
        if pad is not None:
            t = left = b = r = pad
        elif pad_t is not None:
            t, left, b, r = pad_t, pad_l, pad_b, pad_r
        else:
            t, left, b, r = pads if pads is not None else (0, 0, 0, 0)
        g = dY if order == "NCHW" else np.moveaxis(dY, -1, 1)
        n, c, ph, pw = g.shape
        h, w = ph - t - b, pw - left - r
        dx = np.zeros((n, c, h, w), np.float64)
        for i in range(ph):
            for j in range(pw):
                src = []
                for p, size, head in ((i, h, t), (j, w, left)):
                    q = p - head
                    if mode == "constant" and not 0 <= q < size:
                        q = None
                    elif mode == "edge":
                        q = min(max(q, 0), size - 1)
                    elif mode == "reflect":
                        q = abs(q)
                        if q > size - 1:
                            q = 2 * (size - 1) - q
                    src.append(q)
                if src[0] is not None and src[1] is not None:
                    dx[:, :, src[0], src[1]] += g[:, :, i, j]
        dx = dx.astype(dY.dtype)
        return (dx if order == "NCHW" else np.ascontiguousarray(np.moveaxis(dx, 1, -1)),)

    def bind(self, inputs, outputs):
        order = self.args["order"]
        dy, dx = inputs[0], outputs[0]
        _n, _c, h, w = spatial(dx.shape, order)
        src_h, src_w = pad_tables(resolve_pads(self.args), h, w, self.args["mode"])
        return bind_index_sum(self, image_view(dy, order), image_view(dx, order), src_h, src_w)


def bind_index_sum(op, dyv, dxv, src_h, src_w):
    """The gradient call of a separable index gather (inverse tables on the op's device)."""
    if dxv.size == 0:
        return _noop
    h_start, h_pos = inverse_table(src_h, dxv.shape[1])
    w_start, w_pos = inverse_table(src_w, dxv.shape[2])
    arrays = [op.ctx.from_host(a) for a in (h_start, h_pos, w_start, w_pos)]
    return functools.partial(op.kernel, dyv, dxv, *arrays)


# ----------------------------------------------------------------------- ResizeNearest

RESIZE_ARGS = {"width_scale": 1.0, "height_scale": 1.0, "order": "NCHW"}


def nearest_size(size, scale) -> int:
    """floor(size * scale) in float32, as Caffe2 computes it (int * float)."""
    return int(np.float32(size) * np.float32(scale))


def nearest_table(out_size, in_size, scale):
    """Source index of each output position: min(int(float32(i) / scale), in_size - 1)."""
    src = (np.arange(out_size, dtype=np.float32) / np.float32(scale)).astype(np.int64)
    return np.minimum(src, in_size - 1)


def check_scales(height_scale, width_scale, what):
    if not (height_scale > 0 and width_scale > 0):
        raise errors.ArgumentError(f"{what}: scales must be > 0, got height_scale={height_scale},"
                                   f" width_scale={width_scale}")


class ResizeBase(Operator):
    """Shared scale handling: arguments, or a host input [height_scale, width_scale]."""

    scales_input = 1  # index of the optional scales input

    def setup(self):
        check_order(self.args["order"])
        check_scales(self.args["height_scale"], self.args["width_scale"], self.type)
        if len(self.input_names) > self.scales_input:
            self.values_dependent = True
            base = self.input_device if isinstance(self.input_device, dict) else {}
            self.input_device = {**base, self.scales_input: "host"}

    def scales(self, inputs):
        if len(inputs) <= self.scales_input:
            return float(self.args["height_scale"]), float(self.args["width_scale"])
        values = self.read_host(inputs[self.scales_input])
        if values.shape != (2,):
            raise errors.ShapeError(f"{self.type}: scales must be a 1-D tensor [height_scale, width_scale], got"
                                    f" shape {values.shape}")
        hs, ws = float(values[0]), float(values[1])
        check_scales(hs, ws, self.type)
        return hs, ws

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        if len(shapes) > cls.scales_input:
            raise UnknownShape()
        return cls.infer(args, shapes, dtypes)


@register_op
class ResizeNearest(ResizeBase):
    """Y[.., i, j] = X[.., min(int(i / height_scale), H - 1), min(int(j / width_scale), W - 1)].

    Output size floor(H * height_scale) x floor(W * width_scale), computed in float32 as in
    Caffe2.  Scales come from ``height_scale``/``width_scale`` (default 1, must be > 0) or from
    the optional host input ``scales`` = [height_scale, width_scale].  X is 4-D in ``order``
    NCHW (default) or NHWC.
    """

    inputs, outputs = ("X", "scales"), ("Y",)
    num_inputs = (1, 2)
    args = dict(RESIZE_ARGS)
    gradient = staticmethod(lambda op, g_output: resize_nearest_gradient(op, g_output))
    cpu = staticmethod(index_gather_2d_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [resized_shape(shapes[0], args["height_scale"], args["width_scale"], args["order"])], [dtypes[0]]

    def output_spec(self, inputs):
        hs, ws = self.scales(inputs)
        return [resized_shape(inputs[0].shape, hs, ws, self.args["order"])], [np.dtype(inputs[0].dtype)]

    @staticmethod
    def reference(X, scales_input=None, width_scale=1.0, height_scale=1.0, order="NCHW"):
        if scales_input is not None:
            height_scale, width_scale = float(scales_input[0]), float(scales_input[1])
        img = X if order == "NCHW" else np.moveaxis(X, -1, 1)
        h, w = img.shape[2:]
        oh = int(np.float32(h) * np.float32(height_scale))
        ow = int(np.float32(w) * np.float32(width_scale))
        rows = [min(int(np.float32(i) / np.float32(height_scale)), h - 1) for i in range(oh)]
        cols = [min(int(np.float32(j) / np.float32(width_scale)), w - 1) for j in range(ow)]
        y = img[:, :, rows][:, :, :, cols]
        return (np.ascontiguousarray(y if order == "NCHW" else np.moveaxis(y, 1, -1)),)

    def bind(self, inputs, outputs):
        order = self.args["order"]
        x, y = inputs[0], outputs[0]
        hs, ws = self.scales(inputs)
        _n, _c, h, w = spatial(x.shape, order)
        _n, _c, oh, ow = spatial(y.shape, order)
        yv = image_view(y, order)
        if yv.size == 0:
            return _noop
        return functools.partial(self.kernel, image_view(x, order), yv, self.ctx.from_host(nearest_table(oh, h, hs)),
                                 self.ctx.from_host(nearest_table(ow, w, ws)), 0.0)


def resized_shape(shape, height_scale, width_scale, order):
    check_image(shape, "ResizeNearest")
    check_order(order)
    n, c, h, w = spatial(shape, order)
    return image_shape(n, c, nearest_size(h, height_scale), nearest_size(w, width_scale), order)


def resize_nearest_gradient(op, g_output):
    """ResizeNearestGradient(dY, X[, scales]) -> dX (Caffe2's GetResizeNearestGradient)."""
    ctx = GradientContext(op, g_output)
    inputs = [GO(0), I(0)] + ([I(1)] if len(op.input) > 1 else [])
    ctx.add("ResizeNearestGradient", inputs, [GI(0)])
    return ctx.result()


@register_op
class ResizeNearestGradient(ResizeBase):
    """dX[.., h, w] = sum of dY over the output pixels that ResizeNearest copied from X[.., h, w].

    Inputs dY and the forward input X (only its shape is read), optional host ``scales``; same
    arguments as ResizeNearest.  dY must have the forward output's spatial size.
    """

    inputs, outputs = ("dY", "X", "scales"), ("dX",)
    num_inputs = (2, 3)
    args = dict(RESIZE_ARGS)
    scales_input = 2
    input_device = {1: "any"}
    gradient = None
    cpu = staticmethod(index_sum_2d_cpu)

    @staticmethod
    def infer(args, shapes, dtypes):
        return [resize_grad_shape(shapes[0], shapes[1], args["height_scale"], args["width_scale"], args["order"])], \
            [dtypes[0]]

    def output_spec(self, inputs):
        hs, ws = self.scales(inputs)
        return [resize_grad_shape(inputs[0].shape, inputs[1].shape, hs, ws, self.args["order"])], \
            [np.dtype(inputs[0].dtype)]

    @staticmethod
    def reference(dY, X, scales_input=None, width_scale=1.0, height_scale=1.0, order="NCHW"):
        if scales_input is not None:
            height_scale, width_scale = float(scales_input[0]), float(scales_input[1])
        g = dY if order == "NCHW" else np.moveaxis(dY, -1, 1)
        xs = X.shape if order == "NCHW" else (X.shape[0], X.shape[3], X.shape[1], X.shape[2])
        h, w = xs[2], xs[3]
        dx = np.zeros(g.shape[:2] + (h, w), np.float64)
        for i in range(g.shape[2]):
            src_i = min(int(np.float32(i) / np.float32(height_scale)), h - 1)
            for j in range(g.shape[3]):
                src_j = min(int(np.float32(j) / np.float32(width_scale)), w - 1)
                dx[:, :, src_i, src_j] += g[:, :, i, j]
        dx = dx.astype(dY.dtype)
        return (dx if order == "NCHW" else np.ascontiguousarray(np.moveaxis(dx, 1, -1)),)

    def bind(self, inputs, outputs):
        order = self.args["order"]
        dy, dx = inputs[0], outputs[0]
        hs, ws = self.scales(inputs)
        _n, _c, h, w = spatial(dx.shape, order)
        _n, _c, oh, ow = spatial(dy.shape, order)
        return bind_index_sum(self, image_view(dy, order), image_view(dx, order), nearest_table(oh, h, hs),
                              nearest_table(ow, w, ws))


def resize_grad_shape(dy_shape, x_shape, height_scale, width_scale, order):
    check_image(dy_shape, "ResizeNearestGradient")
    check_image(x_shape, "ResizeNearestGradient")
    forward = resized_shape(x_shape, height_scale, width_scale, order)
    n, c, _h, _w = spatial(dy_shape, order)
    _n, _c, h, w = spatial(x_shape, order)
    if spatial(forward, order)[2:] != spatial(dy_shape, order)[2:]:
        raise errors.ShapeError(
            f"ResizeNearestGradient: dY {tuple(dy_shape)} does not have the spatial size ResizeNearest gives for X"
            f" {tuple(x_shape)} with height_scale={height_scale}, width_scale={width_scale} ({forward})")
    return image_shape(n, c, h, w, order)


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
        zero = functools.partial(self.kernel.fill, dxf, 0) if dx.size else _noop
        return _sequence([zero, copy])


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
            return _noop
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
            return _noop
        wrap = wrap_default(self.args)
        n = int(idx.size)
        args = (dy.reshape(outer, n, inner), flat(idx), dx.reshape(outer, d, inner), wrap)
        kernel = self.kernel
        data_shape = tuple(data.shape)

        def call():
            raise_bad_index(kernel(*args), idx, d, axis, wrap, "GatherGradient", data_shape)

        return call
