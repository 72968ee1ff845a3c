"""CUDA kernels for nbcaffe/ops/cumulative.py (same ops, same order): one thread per
(outer, inner) line, summing along the axis in order (the same order as the CPU)."""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def cumsum_kernel(x, y, exclusive, reverse):
    outer, n, inner = x.shape
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        total = x[o, 0, i] * 0
        for s in range(n):
            j = n - 1 - s if reverse else s
            if exclusive:
                y[o, j, i] = total
                total += x[o, j, i]
            else:
                total += x[o, j, i]
                y[o, j, i] = total


@register_kernel("CumSum", CUDA)
def cumsum_launch(x, y, exclusive, reverse):
    outer, _n, inner = x.shape
    if outer * inner:
        cumsum_kernel[blocks_for(outer * inner), THREADS](x, y, exclusive, reverse)
