"""Shared helpers of the array-op families (concat_split, layout, pad_resize, indexing).

**Strided copies** (Concat, Split, Transpose, the order switches, ChannelShuffle, Slice and
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
element's index over the collapsed shape (nbcaffe/cuda/_array_util.py).
"""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe import errors, schema
from nbcaffe.ops.tensor import flat


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


def noop():
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
        return noop
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


def sequence(calls):
    calls = [c for c in calls if c is not noop]
    if not calls:
        return noop
    if len(calls) == 1:
        return calls[0]

    def run():
        for call in calls:
            call()

    return run
