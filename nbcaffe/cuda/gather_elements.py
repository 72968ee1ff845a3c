"""CUDA kernels for nbcaffe/ops/gather_elements.py (same ops, same order).

One thread per INDICES position; the first out-of-range position comes back through a device
word (atomic min), as for Gather.  The gradient scatters with atomic adds (the summation order
of repeated targets varies between runs; float64 atomics need compute capability 6.0).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbcaffe.cuda._array_util import fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit(device=True)
def _source(p, idx, shape, data_strides, axis, dim):
    """Flat DATA offset read by INDICES position p, or -1 when its index is out of range."""
    j = idx[p]
    if j < 0:
        j += dim
    if j < 0 or j >= dim:
        return -1
    rest = p
    src = 0
    for d in range(shape.size - 1, -1, -1):
        k = rest % shape[d]
        rest //= shape[d]
        src += (j if d == axis else k) * data_strides[d]
    return src


@cuda.jit
def gather_elements_kernel(data, idx, out, shape, data_strides, axis, dim, bad):
    for p in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        src = _source(p, idx, shape, data_strides, axis, dim)
        if src < 0:
            cuda.atomic.min(bad, 0, p)
        else:
            out[p] = data[src]


@register_kernel("GatherElements", CUDA)
def gather_elements_launch(data, idx, out, shape, data_strides, axis, dim):
    n = idx.size
    bad = cuda.to_device(np.array([n], np.int64))
    if n:
        gather_elements_kernel[blocks_for(n), THREADS](data, idx, out, shape, data_strides, axis, dim, bad)
    first = int(bad.copy_to_host()[0])
    return first if first < n else -1


@cuda.jit
def gather_elements_grad_kernel(dy, idx, dx, shape, data_strides, axis, dim, bad):
    for p in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        src = _source(p, idx, shape, data_strides, axis, dim)
        if src < 0:
            cuda.atomic.min(bad, 0, p)
        else:
            cuda.atomic.add(dx, src, dy[p])


@register_kernel("GatherElementsGradient", CUDA)
def gather_elements_grad_launch(dy, idx, dx, shape, data_strides, axis, dim):
    n = idx.size
    fill_launch(dx, 0)
    bad = cuda.to_device(np.array([n], np.int64))
    if n:
        gather_elements_grad_kernel[blocks_for(n), THREADS](dy, idx, dx, shape, data_strides, axis, dim, bad)
    first = int(bad.copy_to_host()[0])
    return first if first < n else -1
