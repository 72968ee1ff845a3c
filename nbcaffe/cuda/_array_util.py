"""Shared CUDA kernels of the array-op families (mirror of nbcaffe/ops/_array_util.py).

Strided copies: one grid-stride kernel; each thread decodes its element's index over the
collapsed shape (device int64 arrays) into an X offset and a Y offset.  ``copy_plan`` puts the
shape and strides on the device once per bind and returns the launch.  :data:`LAYOUT` is the
CUDA kernel of every strided-copy op (Concat, Split, Transpose, NCHW2NHWC, NHWC2NCHW,
ChannelShuffle, Slice and their gradients).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.ops._array_util import LayoutKernels


def _noop():
    pass


@cuda.jit
def strided_copy_kernel(x, x_offset, x_strides, y, y_offset, y_strides, shape, n):
    """y[y_offset + k·y_strides] = x[x_offset + k·x_strides] for the n indices k over shape."""
    ndim = shape.size
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        rest = i
        ox = x_offset
        oy = y_offset
        for d in range(ndim - 1, -1, -1):
            k = rest % shape[d]
            rest //= shape[d]
            ox += k * x_strides[d]
            oy += k * y_strides[d]
        y[oy] = x[ox]


def strided_copy_launch(x, x_offset, x_strides, y, y_offset, y_strides, shape, n):
    strided_copy_kernel[blocks_for(n), THREADS](x, x_offset, x_strides, y, y_offset, y_strides, shape, n)


def strided_copy_plan(x, x_offset, x_strides, y, y_offset, y_strides, shape):
    """The CUDA form of ops._array_util.strided_copy_plan_cpu (same arguments)."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return _noop
    arrays = [cuda.to_device(np.asarray(a, np.int64)) for a in (x_strides, y_strides, shape)]
    return functools.partial(strided_copy_launch, x, int(x_offset), arrays[0], y, int(y_offset), arrays[1],
                             arrays[2], n)


@cuda.jit
def fill_kernel(y, value):
    """y[i] = value over flat y."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = value


def fill_launch(y, value):
    if y.size:
        fill_kernel[blocks_for(y.size), THREADS](y, value)


LAYOUT = LayoutKernels(strided_copy_plan, fill_launch)
