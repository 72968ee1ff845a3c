"""CUDA kernels for nbcaffe/ops/pad.py (same ops, same order).

Pad: one thread per output element decodes its index and gathers through the per-axis tables.
PadGradient: one thread per dY element, atomic add into dX (the summation order of inputs read
by several outputs varies between runs; float64 atomics need compute capability 6.0).
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._array_util import fill_launch
from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit(device=True)
def _source(i, out_shape, x_strides, tables, offsets):
    """Flat input offset read by flat output position i, or -1 for a constant position."""
    ndim = out_shape.size
    rest = i
    src = 0
    outside = False
    for d in range(ndim - 1, -1, -1):
        k = rest % out_shape[d]
        rest //= out_shape[d]
        t = tables[offsets[d] + k]
        if t < 0:
            outside = True
        src += t * x_strides[d]
    return -1 if outside else src


@cuda.jit
def pad_kernel(x, y, out_shape, x_strides, tables, offsets, value):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        src = _source(i, out_shape, x_strides, tables, offsets)
        y[i] = value if src < 0 else x[src]


@register_kernel("Pad", CUDA)
def pad_launch(x, y, out_shape, x_strides, tables, offsets, value):
    pad_kernel[blocks_for(y.size), THREADS](x, y, out_shape, x_strides, tables, offsets, value)


@cuda.jit
def pad_grad_kernel(dy, dx, out_shape, x_strides, tables, offsets):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        src = _source(i, out_shape, x_strides, tables, offsets)
        if src >= 0:
            cuda.atomic.add(dx, src, dy[i])


@register_kernel("PadGradient", CUDA)
def pad_grad_launch(dy, dx, out_shape, x_strides, tables, offsets):
    fill_launch(dx, 0)
    if dy.size:
        pad_grad_kernel[blocks_for(dy.size), THREADS](dy, dx, out_shape, x_strides, tables, offsets)
