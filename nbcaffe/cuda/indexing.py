"""CUDA kernels for nbcaffe/ops/indexing.py (same ops, same order).

* Squeeze and ExpandDims: the plain copy of nbcaffe/cuda/_launch.py (a view when in place).
* Slice and SliceGradient: the shared strided copy of nbcaffe/cuda/_array_util.py.
* Gather checks every index on the device and reports the first bad position through a
  device word (atomic min), which the op turns into the same ShapeError as on the CPU.
  GatherGradient scatters with atomic adds (one thread per dY element): a dense table of the
  positions reading each DATA row would cost a pass over every index per row.  The summation
  order of repeated indices therefore varies between runs (float64 atomics need compute
  capability 6.0).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbcaffe.cuda._array_util import LAYOUT, fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for, copy_launch
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

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
    """Same contract as ops.indexing.gather_cpu: returns -1 or the first bad index position."""
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
    """Same contract as ops.indexing.gather_grad_cpu: zero dx, scatter-add dy, -1 or a bad position."""
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
