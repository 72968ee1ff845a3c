"""CUDA kernels for nbcaffe/ops/triangular.py (same ops, same order)."""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def trilu_kernel(x, y, k, upper):
    """y[b, i, j] = x[b, i, j] inside the triangle, else 0 (one thread per element)."""
    batch, rows, cols = x.shape
    for t in range(cuda.grid(1), batch * rows * cols, cuda.gridsize(1)):
        j = t % cols
        i = (t // cols) % rows
        b = t // (rows * cols)
        keep = (j - i >= k) if upper else (j - i <= k)
        y[b, i, j] = x[b, i, j] if keep else x[b, i, j] * 0


@register_kernel("Trilu", CUDA)
def trilu_launch(x, y, k, upper):
    if x.size:
        trilu_kernel[blocks_for(x.size), THREADS](x, y, k, upper)
