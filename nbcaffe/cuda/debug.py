"""CUDA kernels for nbcaffe/ops/debug.py (same ops, same order).

Each kernel finds the first offending element on the device (atomic min of its position in a
one-word device array) so only that word crosses to the host on a passing check.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

# ----------------------------------------------------------------------- NanCheck


@cuda.jit
def nan_check_kernel(x, y, copy, first):
    """y[i] = x[i] when copy; first[0] = min position i with x[i] NaN or +-Inf."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if copy:
            y[i] = v
        if math.isnan(v) or math.isinf(v):
            cuda.atomic.min(first, 0, i)


def _first_launch(kernel, n, *args):
    first = cuda.to_device(np.array([n], np.int64))
    if n:
        kernel[blocks_for(n), THREADS](*args, first)
    found = int(first.copy_to_host()[0])
    return found if found < n else -1


@register_kernel("NanCheck", CUDA)
def nan_check_launch(x, y, copy):
    """Same contract as ops.debug.nan_check_cpu."""
    return _first_launch(nan_check_kernel, x.size, x, y, copy)


# ----------------------------------------------------------------------- Assert


@cuda.jit
def assert_kernel(x, first):
    """first[0] = min position i with x[i] == 0."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        if x[i] == 0:
            cuda.atomic.min(first, 0, i)


@register_kernel("Assert", CUDA)
def assert_launch(x):
    """Same contract as ops.debug.assert_cpu."""
    return _first_launch(assert_kernel, x.size, x)
