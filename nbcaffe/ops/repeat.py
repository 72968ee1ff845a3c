"""Repeating data: Expand (NumPy broadcast to a shape given as an input) and Tile (Caffe2's
whole-block repeat along one axis), with their gradient ops.

Both forward ops are strided copies (nbcaffe/ops/_array_util.py) in which a repeated dim reads
its source with stride 0.  ExpandGradient sums dY over the broadcast dims (an ``@njit`` odometer
on the CPU, deterministic; atomic adds on CUDA); TileGradient sums the ``tiles`` blocks.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors, schema
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import LAYOUT_CPU, c_strides, copy_window, noop
from nbcaffe.ops._elementwise import flat, sum_to_shape
from nbcaffe.ops.logical import broadcast_strides
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

# ----------------------------------------------------------------------------- Expand


def expand_shape(x_shape, shape, where="Expand") -> tuple:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(tuple(x_shape), tuple(int(d) for d in shape)))
    except ValueError:
        raise errors.ShapeError(f"{where}: input {tuple(x_shape)} does not broadcast with shape"
                                f" {tuple(int(d) for d in shape)}") from None


@register_op
class Expand(Operator):
    """output = X broadcast (NumPy rules, both ways) with the 1-D int ``shape`` input (read on the
    host): output shape = broadcast(X.shape, shape).  Gradient: ExpandGradient."""

    inputs, outputs = ("X", "shape"), ("output",)
    input_device = {1: "host"}
    values_dependent = True
    cpu = LAYOUT_CPU
    gradient = simple_gradient("ExpandGradient", [GO(0), I(0)], [GI(0)])

    def _target(self, inputs):
        shape = self.read_host(inputs[1])
        if shape.ndim != 1 or not np.issubdtype(shape.dtype, np.integer):
            raise errors.ShapeError(f"{self.type}: shape must be a 1-D int tensor, got {shape.shape}"
                                    f" {shape.dtype.name}")
        return expand_shape(inputs[0].shape, shape, self.type)

    def output_spec(self, inputs):
        return [self._target(inputs)], [np.dtype(inputs[0].dtype)]

    @staticmethod
    def infer(args, shapes, dtypes):
        from nbcaffe.shape_inference import UnknownShape

        raise UnknownShape()

    @staticmethod
    def reference(X, shape):
        return (np.broadcast_to(X, expand_shape(X.shape, shape)).copy(),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        out_shape = tuple(y.shape)
        if y.size == 0:
            return noop
        return copy_window(self.kernel, flat(x), 0, broadcast_strides(out_shape, x.shape), flat(y), 0,
                           c_strides(out_shape), out_shape)


@numba.njit(cache=True)
def sum_to_cpu(dy, dx, shape, sx):
    """dx = 0, then dx[.] += dy[i] over flat C-order dy of ``shape`` (dx strides sx, 0 = summed)."""
    for k in range(dx.size):
        dx[k] = 0
    ndim = shape.size
    index = np.zeros(ndim, np.int64)
    ox = 0
    for i in range(dy.size):
        dx[ox] += dy[i]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            ox += sx[d]
            if index[d] < shape[d]:
                break
            ox -= sx[d] * shape[d]
            index[d] = 0
            d -= 1


@register_op
class ExpandGradient(Operator):
    """dX = dY summed over the dims along which Expand broadcast X (inputs dY, X; X is read for
    its shape)."""

    inputs, outputs = ("dY", "X"), ("dX",)
    input_device = {1: "any"}
    cpu = staticmethod(sum_to_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        out = expand_shape(shapes[1], shapes[0], "ExpandGradient")
        if out != tuple(shapes[0]):
            raise errors.ShapeError(f"ExpandGradient: dY {tuple(shapes[0])} is not X {tuple(shapes[1])} broadcast")
        return [tuple(shapes[1])], [dtypes[0]]

    @staticmethod
    def reference(dY, X):
        return (sum_to_shape(dY, X.shape).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        dy, x = inputs
        shape = tuple(dy.shape) if dy.shape else (1,)
        plan = [np.asarray(shape, np.int64), broadcast_strides(shape, x.shape)]
        plan = [self.ctx.from_host(a) for a in plan]
        return functools.partial(self.kernel, flat(dy), flat(outputs[0]), *plan)


# ----------------------------------------------------------------------------- Tile


def tile_view(shape, axis, where="Tile"):
    """(outer, d * inner) around ``axis`` of ``shape``."""
    shape = tuple(int(n) for n in shape)
    if not shape:
        raise errors.ShapeError(f"{where}: input must have at least 1 dim")
    axis = schema.canonical_axis(axis, len(shape))
    outer = schema.prod(shape[:axis])
    return axis, outer, schema.prod(shape[axis:])


@register_op
class Tile(Operator):
    """output = input repeated ``tiles`` times as whole blocks along ``axis`` (np.tile on one
    axis): output dim[axis] = tiles * input dim[axis].  Arguments ``tiles`` 1, ``axis`` 0
    (negative counts from the end).  Gradient: TileGradient."""

    inputs, outputs = ("input",), ("output",)
    args = {"tiles": 1, "axis": 0}
    cpu = LAYOUT_CPU
    gradient = simple_gradient("TileGradient", [GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        if args["tiles"] < 0:
            raise errors.ArgumentError(f"Tile: tiles must be >= 0, got {args['tiles']}")
        axis, _, _ = tile_view(shapes[0], args["axis"])
        out = list(shapes[0])
        out[axis] *= args["tiles"]
        return [tuple(out)], [dtypes[0]]

    @staticmethod
    def reference(input, tiles=1, axis=0):
        reps = [1] * input.ndim
        reps[axis] = tiles
        return (np.tile(input, reps),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y.size == 0:
            return noop
        _axis, outer, block = tile_view(x.shape, self.args["axis"], self.type)
        tiles = self.args["tiles"]
        shape = (outer, tiles, block)
        return copy_window(self.kernel, flat(x), 0, (block, 0, 1), flat(y), 0, c_strides(shape), shape)


@numba.njit(cache=True)
def tile_grad_cpu(dy, dx):
    """dx[o, k] = Σ_t dy[o, t, k] for dy (outer, tiles, block) and dx (outer, block)."""
    outer, tiles, block = dy.shape
    for o in range(outer):
        for k in range(block):
            dx[o, k] = 0
        for t in range(tiles):
            for k in range(block):
                dx[o, k] += dy[o, t, k]


@register_op
class TileGradient(Operator):
    """dX = dY summed over the ``tiles`` blocks along ``axis`` (same arguments as Tile)."""

    inputs, outputs = ("dY",), ("dX",)
    args = {"tiles": Arg("int", 1), "axis": Arg("int", 0)}
    cpu = staticmethod(tile_grad_cpu)
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        tiles = args["tiles"]
        axis = schema.canonical_axis(args["axis"], len(shapes[0]))
        out = list(shapes[0])
        if tiles < 1 or out[axis] % tiles:
            raise errors.ShapeError(f"TileGradient: dY dim {axis} ({out[axis]}) is not a multiple of tiles={tiles}")
        out[axis] //= tiles
        return [tuple(out)], [dtypes[0]]

    @staticmethod
    def reference(dY, tiles=1, axis=0):
        axis = axis + dY.ndim if axis < 0 else axis
        shape = dY.shape[:axis] + (tiles, dY.shape[axis] // tiles) + dY.shape[axis + 1:]
        return (dY.reshape(shape).sum(axis=axis).astype(dY.dtype),)

    def bind(self, inputs, outputs):
        dy, dx = inputs[0], outputs[0]
        tiles = self.args["tiles"]
        _axis, outer, block = tile_view(dx.shape, self.args["axis"], self.type)
        return functools.partial(self.kernel, dy.reshape(outer, tiles, block), dx.reshape(outer, block))
