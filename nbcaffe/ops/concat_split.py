"""Concat (DepthConcat) and Split (DepthSplit): join inputs along an axis / cut one input into
consecutive pieces along it, and their gradient plumbing (Concat's gradient is a Split fed by
``split_info``; Split's is a Concat of the output gradients).

Both are strided copies (nbcaffe/ops/_array_util.py): one "copy this window of flat X into that
window of flat Y" per input (Concat) or output (Split), collapsed and planned once per bind.

Concat's ``split_info`` output (int32 sizes along the axis) always lives on the host, as in
Caffe2 (its DeviceInferenceFunction puts output 1 on the CPU whatever the op's device); the
Split that Concat's gradient emits reads it there.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, GradientError, O
from nbcaffe.context import CPU_CONTEXT
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import LAYOUT_CPU, check_order, copy_window, order_axis, sequence
from nbcaffe.ops.tensor import flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


def _copy_named_args(grad_def, op_def, names):
    """Append the forward op's Argument protos called ``names`` to a gradient OperatorDef."""
    for arg in op_def.arg:
        if arg.name in names:
            grad_def.arg.add().CopyFrom(arg)


def _given(args):
    return getattr(args, "given", set())


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
        copy = sequence(plans)
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
        return sequence(plans)
