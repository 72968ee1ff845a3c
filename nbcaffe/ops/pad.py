"""Pad: N-dimensional padding of any axes (constant, reflect, edge or wrap), with cropping by
negative pads, and its gradient.  (PadImage, in pad_resize.py, is Caffe2's 4-D H/W padding.)

Each axis gets a host-computed index table: output index j along the axis reads input index
``table[j]`` (-1 = the constant value).  The forward kernel gathers through the tables; the
gradient scatters dY back through the same tables (reflect/edge/wrap map several outputs to one
input), summing in output order on the CPU (deterministic) and with atomic adds on CUDA.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import c_strides
from nbcaffe.ops._elementwise import flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

MODES = ("constant", "reflect", "edge", "wrap")
ARGS = {"pads": Arg("ints", (), "per axis: all heads, then all tails (negative crops)"),
        "mode": Arg("str", "constant", "constant | reflect | edge | wrap"),
        "value": Arg("float", 0.0, "fill value of mode constant")}


def pad_tables(shape, pads, mode, where="Pad"):
    """(out_shape, tables, offsets): the concatenated int64 index tables of every axis."""
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    pads = [int(p) for p in pads]
    if mode not in MODES:
        raise errors.ArgumentError(f"{where}: mode '{mode}' is not one of {', '.join(MODES)}")
    if len(pads) != 2 * rank:
        raise errors.ArgumentError(f"{where}: pads {pads} need 2 entries per dim of data {shape} ({2 * rank})")
    out_shape, tables, offsets = [], [], []
    pos = 0
    for a, d in enumerate(shape):
        head, tail = pads[a], pads[a + rank]
        n = d + head + tail
        if n < 0:
            raise errors.ShapeError(f"{where}: pads {head}, {tail} crop more than dim {a} of data {shape} holds")
        if d == 0 and n > 0 and mode != "constant":
            raise errors.ShapeError(f"{where}: cannot {mode}-pad the empty dim {a} of data {shape}")
        src = np.arange(n, dtype=np.int64) - head
        inside = (src >= 0) & (src < d)
        if mode == "constant":
            table = np.where(inside, src, -1)
        elif mode == "edge":
            table = np.clip(src, 0, d - 1)
        elif mode == "wrap":
            table = np.mod(src, d) if d else src
        else:  # reflect: mirror without repeating the edge
            if d == 1:
                table = np.zeros(n, np.int64)
            else:
                period = 2 * (d - 1)
                m = np.mod(src, period)
                table = np.where(m < d, m, period - m)
        tables.append(table.astype(np.int64))
        offsets.append(pos)
        pos += n
        out_shape.append(n)
    joined = np.concatenate(tables) if tables else np.zeros(0, np.int64)
    return tuple(out_shape), joined, np.asarray(offsets + [pos], np.int64)


@numba.njit(cache=True)
def pad_cpu(x, y, out_shape, x_strides, tables, offsets, value):
    """y[j] = x[Σ table_a[j_a] · stride_a], or value where any table entry is -1 (flat x, y)."""
    ndim = out_shape.size
    index = np.zeros(ndim, np.int64)
    for i in range(y.size):
        src = 0
        for a in range(ndim):
            t = tables[offsets[a] + index[a]]
            if t < 0:
                src = -1
                break
            src += t * x_strides[a]
        y[i] = value if src < 0 else x[src]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            if index[d] < out_shape[d]:
                break
            index[d] = 0
            d -= 1


@numba.njit(cache=True)
def pad_grad_cpu(dy, dx, out_shape, x_strides, tables, offsets):
    """dx = 0, then dx[source of j] += dy[j] for every j that read the input (flat dy, dx)."""
    for k in range(dx.size):
        dx[k] = 0
    ndim = out_shape.size
    index = np.zeros(ndim, np.int64)
    for i in range(dy.size):
        src = 0
        for a in range(ndim):
            t = tables[offsets[a] + index[a]]
            if t < 0:
                src = -1
                break
            src += t * x_strides[a]
        if src >= 0:
            dx[src] += dy[i]
        d = ndim - 1
        while d >= 0:
            index[d] += 1
            if index[d] < out_shape[d]:
                break
            index[d] = 0
            d -= 1


def _plan(ctx, shape, pads, mode, where):
    out_shape, tables, offsets = pad_tables(shape, pads, mode, where)
    arrays = (np.asarray(out_shape or (1,), np.int64), np.asarray(c_strides(shape) or (1,), np.int64), tables, offsets)
    return out_shape, tuple(ctx.from_host(a) for a in arrays)


def _noop():
    pass


@register_op
class Pad(Operator):
    """output = data padded along every axis by ``pads`` (all heads, then all tails; a negative
    pad crops), ``mode``: constant (``value``, default 0), reflect (mirror, not repeating the
    edge), edge (repeat the border) or wrap (periodic).  Gradient: PadGradient."""

    inputs, outputs = ("data",), ("output",)
    args = dict(ARGS)
    cpu = staticmethod(pad_cpu)
    gradient = simple_gradient("PadGradient", [GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        return [pad_tables(shapes[0], args["pads"], args["mode"])[0]], [dtypes[0]]

    @staticmethod
    def reference(data, pads=(), mode="constant", value=0.0):
        rank = data.ndim
        cropped = data[tuple(slice(max(-pads[a], 0), data.shape[a] - max(-pads[a + rank], 0)) for a in range(rank))]
        width = [(max(pads[a], 0), max(pads[a + rank], 0)) for a in range(rank)]
        numpy_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
        if mode != "constant":
            # crop after padding: NumPy's modes read the uncropped data
            padded = np.pad(data, width, mode=numpy_mode)
            index = tuple(slice(max(-pads[a], 0), padded.shape[a] - max(-pads[a + rank], 0)) for a in range(rank))
            return (padded[index].copy(),)
        return (np.pad(cropped, width, mode="constant", constant_values=value).astype(data.dtype),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y.size == 0:
            return _noop
        _out, plan = _plan(self.ctx, x.shape, self.args["pads"], self.args["mode"], self.type)
        value = np.dtype(y.dtype).type(self.args["value"]) if y.dtype != np.bool_ else bool(self.args["value"])
        return functools.partial(self.kernel, flat(x), flat(y), *plan, value)


@register_op
class PadGradient(Operator):
    """dX = Σ of dY over the output positions that read each input element (same arguments as
    Pad; the constant positions get no gradient).  Input dY only: dX's shape is dY's minus the
    pads."""

    inputs, outputs = ("dY",), ("dX",)
    args = dict(ARGS)
    cpu = staticmethod(pad_grad_cpu)
    gradient = None

    @staticmethod
    def _x_shape(args, dy_shape):
        rank = len(dy_shape)
        pads = list(args["pads"])
        if len(pads) != 2 * rank:
            raise errors.ArgumentError(f"PadGradient: pads {pads} need 2 entries per dim of dY {tuple(dy_shape)}")
        return tuple(int(dy_shape[a]) - pads[a] - pads[a + rank] for a in range(rank))

    @classmethod
    def infer(cls, args, shapes, dtypes):
        x_shape = cls._x_shape(args, shapes[0])
        if any(d < 0 for d in x_shape):
            raise errors.ShapeError(f"PadGradient: dY {tuple(shapes[0])} is smaller than the pads {list(args['pads'])}")
        return [x_shape], [dtypes[0]]

    @classmethod
    def reference(cls, dY, pads=(), mode="constant", value=0.0):
        x_shape = cls._x_shape({"pads": pads}, dY.shape)
        _out, tables, offsets = pad_tables(x_shape, pads, mode)
        dx = np.zeros(x_shape, np.float64)
        rank = len(x_shape)
        for j in np.ndindex(*dY.shape):
            src = [tables[offsets[a] + j[a]] for a in range(rank)]
            if min(src, default=0) >= 0:
                dx[tuple(src)] += dY[j]
        return (dx.astype(dY.dtype),)

    def bind(self, inputs, outputs):
        dy, dx = inputs[0], outputs[0]
        _out, plan = _plan(self.ctx, dx.shape, self.args["pads"], self.args["mode"], self.type)
        return functools.partial(self.kernel, flat(dy), flat(dx), *plan)
