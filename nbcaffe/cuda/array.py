"""CUDA kernels for nbcaffe/ops/array.py (same ops, same order).

* Strided copies: one grid-stride kernel; each thread decodes its element's index over the
  collapsed shape (device int64 arrays) into an X offset and a Y offset.  ``copy_plan`` puts
  the shape and strides on the device once per bind and returns the launch.
* Separable index tables (PadImage, ResizeNearest): one thread per output element for the
  gather; the gradients are gathers too (one thread per input pixel summing the output
  positions listed in the inverse tables), so they need no atomics and give the same sum
  order on every run.
* Gather checks every index on the device and reports the first bad position through a
  device word (atomic min), which the op turns into the same ShapeError as on the CPU.
  GatherGradient scatters with atomic adds (one thread per dY element): a dense table of the
  positions reading each DATA row would cost a pass over every index per row.  The summation
  order of repeated indices therefore varies between runs (float64 atomics need compute
  capability 6.0).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for, copy_launch
from nbcaffe.devices import CUDA
from nbcaffe.ops import array as cpu
from nbcaffe.registry import register_kernel

# ----------------------------------------------------------------------- strided copies


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
    """The CUDA form of ops.array.strided_copy_plan_cpu (same arguments)."""
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


LAYOUT = cpu.LayoutKernels(strided_copy_plan, fill_launch)

for _name in ("Concat", "Split", "Transpose", "NCHW2NHWC", "NHWC2NCHW", "ChannelShuffle", "ChannelShuffleGradient"):
    register_kernel(_name, CUDA)(LAYOUT)
del _name

# ----------------------------------------------------------------------- separable index tables


@cuda.jit
def index_gather_2d_kernel(x, y, src_h, src_w, value):
    """y[b, i, j, k] = x[b, src_h[i], src_w[j], k] (value where an index is -1); 4-D arrays."""
    nb, oh, ow, nk = y.shape
    n = nb * oh * ow * nk
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t % nk
        rest = t // nk
        j = rest % ow
        rest //= ow
        i = rest % oh
        b = rest // oh
        h = src_h[i]
        w = src_w[j]
        if h < 0 or w < 0:
            y[b, i, j, k] = value
        else:
            y[b, i, j, k] = x[b, h, w, k]


def index_gather_2d_launch(x, y, src_h, src_w, value):
    index_gather_2d_kernel[blocks_for(y.size), THREADS](x, y, src_h, src_w, value)


@cuda.jit
def index_sum_2d_kernel(dy, dx, h_start, h_pos, w_start, w_pos):
    """dx[b, h, w, k] = sum of dy[b, i, j, k] over the listed positions i of h and j of w."""
    nb, nh, nw, nk = dx.shape
    n = nb * nh * nw * nk
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t % nk
        rest = t // nk
        w = rest % nw
        rest //= nw
        h = rest % nh
        b = rest // nh
        acc = 0.0
        for a in range(h_start[h], h_start[h + 1]):
            i = h_pos[a]
            for c in range(w_start[w], w_start[w + 1]):
                acc += dy[b, i, w_pos[c], k]
        dx[b, h, w, k] = acc


def index_sum_2d_launch(dy, dx, h_start, h_pos, w_start, w_pos):
    index_sum_2d_kernel[blocks_for(dx.size), THREADS](dy, dx, h_start, h_pos, w_start, w_pos)


register_kernel("PadImage", CUDA)(index_gather_2d_launch)
register_kernel("PadImageGradient", CUDA)(index_sum_2d_launch)
register_kernel("ResizeNearest", CUDA)(index_gather_2d_launch)
register_kernel("ResizeNearestGradient", CUDA)(index_sum_2d_launch)

# ----------------------------------------------------------------------- Squeeze / ExpandDims

register_kernel("Squeeze", CUDA)(copy_launch)
register_kernel("ExpandDims", CUDA)(copy_launch)

# ----------------------------------------------------------------------- Slice

register_kernel("Slice", CUDA)(LAYOUT)
register_kernel("SliceGradient", CUDA)(LAYOUT)

# ----------------------------------------------------------------------- Gather


@cuda.jit(device=True)
def _wrapped(j, d, wrap):
    """The index j along an axis of size d, or -1 when out of range."""
    if wrap and j < 0:
        j += d
    if j < 0 or j >= d:
        return -1
    return j


@cuda.jit
def gather_kernel(x, idx, y, wrap, bad):
    """y[o, i, r] = x[o, idx[i], r]; bad[0] = min position of an out-of-range index."""
    outer, n, inner = y.shape
    d = x.shape[1]
    total = outer * n * inner
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = t % inner
        rest = t // inner
        i = rest % n
        o = rest // n
        j = _wrapped(idx[i], d, wrap)
        if j < 0:
            cuda.atomic.min(bad, 0, i)
        else:
            y[o, i, r] = x[o, j, r]


@register_kernel("Gather", CUDA)
def gather_launch(x, idx, y, wrap):
    """Same contract as ops.array.gather_cpu: returns -1 or the first bad index position."""
    n = idx.size
    bad = cuda.to_device(np.array([n], np.int64))
    if y.size:
        gather_kernel[blocks_for(y.size), THREADS](x, idx, y, wrap, bad)
    first = int(bad.copy_to_host()[0])
    return first if first < n else -1


@cuda.jit
def check_indices_kernel(idx, d, wrap, bad):
    """bad[0] = min position i with idx[i] outside the axis of size d."""
    for i in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        if _wrapped(idx[i], d, wrap) < 0:
            cuda.atomic.min(bad, 0, i)


@cuda.jit
def gather_grad_kernel(dy, idx, dx, wrap):
    """dx[o, idx[i], r] += dy[o, i, r] with atomic adds (indices already checked)."""
    outer, n, inner = dy.shape
    d = dx.shape[1]
    total = outer * n * inner
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = t % inner
        rest = t // inner
        i = rest % n
        o = rest // n
        j = _wrapped(idx[i], d, wrap)
        cuda.atomic.add(dx, (o, j, r), dy[o, i, r])


@register_kernel("GatherGradient", CUDA)
def gather_grad_launch(dy, idx, dx, wrap):
    """Same contract as ops.array.gather_grad_cpu: zero dx, scatter-add dy, -1 or a bad position."""
    n = idx.size
    bad = cuda.to_device(np.array([n], np.int64))
    if n:
        check_indices_kernel[blocks_for(n), THREADS](idx, dx.shape[1], wrap, bad)
    first = int(bad.copy_to_host()[0])
    if first < n:
        return first
    fill_launch(dx.reshape(dx.size), 0)
    if dy.size:
        gather_grad_kernel[blocks_for(dy.size), THREADS](dy, idx, dx, wrap)
    return -1
