"""Dim permutations: Transpose, NCHW2NHWC, NHWC2NCHW, ChannelShuffle and ChannelShuffleGradient.

Every op here is one strided copy (nbcaffe/ops/_array_util.py): the output is the input viewed
with permuted strides (ChannelShuffle: the channel axis viewed as (G, K) and transposed to
(K, G)), collapsed and planned once per bind.  The gradients are the inverse permutations.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, GradientContext, GradientError, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import LAYOUT_CPU, c_strides, check_order, copy_permuted, copy_window
from nbcaffe.ops.tensor import flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg


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
