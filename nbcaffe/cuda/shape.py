"""CUDA kernels for nbcaffe/ops/shape.py (same ops, same order).

Shape and Size copy host-computed values into their device output; Range is a grid-stride
kernel.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


def write_values_launch(values, y):
    """y = values (host int64 array of y's shape), one host-to-device copy."""
    y.copy_to_device(values)


register_kernel("Shape", CUDA)(write_values_launch)
register_kernel("Size", CUDA)(write_values_launch)


@cuda.jit
def range_kernel(start, delta, y):
    """y[i] = start + i * delta."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = start + i * delta


@register_kernel("Range", CUDA)
def range_launch(start, delta, y):
    if y.size:
        range_kernel[blocks_for(y.size), THREADS](start, delta, y)
