"""StridedSlice: NumPy-style slicing with steps along chosen axes (ONNX Slice semantics), and
its gradient.

A slice is a strided window of the flat input (offset, per-dim strides = C strides x step, which
may be negative), so both ops are strided copies (nbcaffe/ops/_array_util.py): StridedSlice reads
the window, StridedSliceGradient zero-fills dData and writes dY into it.
"""

from __future__ import annotations

import numpy as np

from nbcaffe import errors
from nbcaffe.autograd import GI, GO, I, simple_gradient
from nbcaffe.operator import Operator
from nbcaffe.ops._array_util import LAYOUT_CPU, c_strides, copy_window, noop, sequence
from nbcaffe.ops._elementwise import flat
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

ARGS = {"starts": Arg("ints", (), "first index per sliced axis"),
        "ends": Arg("ints", (), "end index (exclusive) per sliced axis"),
        "axes": Arg("ints", (), "sliced axes (default 0, 1, ...)"),
        "steps": Arg("ints", (), "step per sliced axis (default 1; negative walks backwards)")}


def slice_plan(shape, starts, ends, axes=(), steps=(), where="StridedSlice"):
    """[(start, count, step)] per dim of ``shape`` with ONNX Slice's clamping rules."""
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    n = len(starts)
    axes = list(axes) if len(axes) else list(range(n))
    steps = list(steps) if len(steps) else [1] * n
    if not (len(ends) == n == len(axes) == len(steps)):
        raise errors.ArgumentError(f"{where}: starts {list(starts)}, ends {list(ends)}, axes {axes} and steps"
                                   f" {steps} must have the same length")
    plan = [(0, d, 1) for d in shape]
    seen = set()
    for s, e, a, k in zip(starts, ends, axes, steps):
        a, s, e, k = int(a), int(s), int(e), int(k)
        if not -rank <= a < rank:
            raise errors.ShapeError(f"{where}: axis {a} is out of range for data of shape {shape}")
        a = a + rank if a < 0 else a
        if a in seen:
            raise errors.ArgumentError(f"{where}: axis {a} is sliced twice")
        seen.add(a)
        if k == 0:
            raise errors.ArgumentError(f"{where}: step 0 on axis {a}")
        d = shape[a]
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if k > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
            count = max(0, -(-(e - s) // k))
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
            count = max(0, -(-(s - e) // -k))
        plan[a] = (s, count, k)
    return plan


def window(shape, plan):
    """(offset, strides, out_shape) of the slice inside flat C-order data of ``shape``."""
    strides = c_strides(shape)
    offset = sum(s * st for (s, count, _k), st in zip(plan, strides) if count)
    return offset, tuple(st * k for (_s, _c, k), st in zip(plan, strides)), tuple(c for _s, c, _k in plan)


@register_op
class StridedSlice(Operator):
    """output = data[starts[i]:ends[i]:steps[i] along axes[i]] (ONNX Slice semantics).

    Negative starts/ends count from the end of their axis; values are clamped to the axis
    (for negative steps start to [0, dim-1] and end to [-1, dim-1]), so an empty slice gives
    a zero-size dim.  Axes not listed are taken whole.  Gradient: StridedSliceGradient.
    """

    inputs, outputs = ("data",), ("output",)
    args = dict(ARGS)
    cpu = LAYOUT_CPU
    gradient = simple_gradient("StridedSliceGradient", [I(0), GO(0)], [GI(0)])

    @staticmethod
    def infer(args, shapes, dtypes):
        plan = slice_plan(shapes[0], args["starts"], args["ends"], args["axes"], args["steps"])
        return [tuple(c for _s, c, _k in plan)], [dtypes[0]]

    @staticmethod
    def reference(data, starts=(), ends=(), axes=(), steps=()):
        plan = slice_plan(data.shape, starts, ends, axes, steps)
        index = tuple(slice(s, s + k * c, k) if c and k > 0 else
                      (slice(s, (s + k * c) if s + k * c >= 0 else None, k) if c else slice(0, 0))
                      for s, c, k in plan)
        return (data[index].copy(),)

    def bind(self, inputs, outputs):
        x, y = inputs[0], outputs[0]
        if y.size == 0:
            return noop
        a = self.args
        offset, strides, shape = window(x.shape, slice_plan(x.shape, a["starts"], a["ends"], a["axes"],
                                                            a["steps"], self.type))
        return copy_window(self.kernel, flat(x), offset, strides, flat(y), 0, c_strides(shape), shape)


@register_op
class StridedSliceGradient(Operator):
    """dData = zeros shaped like data with dY written into the window StridedSlice read.
    Inputs data (read for its shape) and dY; same arguments as StridedSlice."""

    inputs, outputs = ("data", "dY"), ("dData",)
    input_device = {0: "any"}
    args = dict(ARGS)
    cpu = LAYOUT_CPU
    gradient = None

    @staticmethod
    def infer(args, shapes, dtypes):
        plan = slice_plan(shapes[0], args["starts"], args["ends"], args["axes"], args["steps"])
        expected = tuple(c for _s, c, _k in plan)
        if tuple(shapes[1]) != expected:
            raise errors.ShapeError(f"StridedSliceGradient: dY {tuple(shapes[1])} must have the slice's shape"
                                    f" {expected} (data {tuple(shapes[0])})")
        return [tuple(shapes[0])], [dtypes[1]]

    @staticmethod
    def reference(data, dY, starts=(), ends=(), axes=(), steps=()):
        out = np.zeros(data.shape, dY.dtype)
        plan = slice_plan(data.shape, starts, ends, axes, steps)
        offset, strides, shape = window(data.shape, plan)
        if dY.size:
            view = np.lib.stride_tricks.as_strided(out.reshape(-1)[offset:], shape=shape,
                                                   strides=tuple(s * out.itemsize for s in strides))
            view[...] = dY
        return (out,)

    def bind(self, inputs, outputs):
        data, dy = inputs
        dx = outputs[0]
        a = self.args
        offset, strides, shape = window(data.shape, slice_plan(data.shape, a["starts"], a["ends"], a["axes"],
                                                               a["steps"], self.type))
        calls = [lambda: self.kernel.fill(flat(dx), 0)] if dx.size else []
        if dy.size:
            calls.append(copy_window(self.kernel, flat(dy), 0, c_strides(shape), flat(dx), offset, strides, shape))
        return sequence(calls)
