"""CUDA kernels for nbcaffe/ops/mvn.py (same ops, same order, same launcher arguments).

One block per row of the (A, B) view (grid-stride over rows); the block's threads stride
over the row and tree-reduce their float64 partial sums in shared memory.
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, block_sum
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


def _row_blocks(rows):
    return max(1, min(rows, 4096))


@cuda.jit
def mvn_kernel(x, normalize_variance, eps, y):
    """y = (x - mean) [/ (std + eps)] per row of the (A, B) arrays; y may alias x."""
    shared_a = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    rows = x.shape[0]
    n = x.shape[1]
    for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, n, ROW_THREADS):
            acc += x[row, j]
        shared_a[tid] = acc
        cuda.syncthreads()  # every partial sum is written before the tree reads it
        block_sum(shared_a, tid)
        mean = shared_a[0] / n
        cuda.syncthreads()  # all threads have read the mean before shared_a is reused
        denom = 1.0
        if normalize_variance:
            acc = 0.0
            for j in range(tid, n, ROW_THREADS):
                d = x[row, j] - mean
                acc += d * d
            shared_a[tid] = acc
            cuda.syncthreads()  # every partial sum of squares is written before the tree
            block_sum(shared_a, tid)
            denom = math.sqrt(shared_a[0] / n) + eps
            cuda.syncthreads()  # all threads have read the sum before the next row reuses it
        for j in range(tid, n, ROW_THREADS):
            y[row, j] = (x[row, j] - mean) / denom


@register_kernel("MVN", CUDA)
def mvn_launch(x, normalize_variance, eps, y):
    """Launcher with mvn_cpu's signature."""
    mvn_kernel[_row_blocks(x.shape[0]), ROW_THREADS](x, normalize_variance, eps, y)


@cuda.jit
def mvn_grad_kernel(x, dy, normalize_variance, eps, dx):
    """dx of MVN per row of the (A, B) arrays (formula in mvn_grad_cpu); dx may alias dy."""
    shared_a = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_b = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    rows = x.shape[0]
    n = x.shape[1]
    for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        acc = 0.0
        gacc = 0.0
        for j in range(tid, n, ROW_THREADS):
            acc += x[row, j]
            gacc += dy[row, j]
        shared_a[tid] = acc
        shared_b[tid] = gacc
        cuda.syncthreads()  # partial sums of x and dy written before the trees read them
        block_sum(shared_a, tid)
        block_sum(shared_b, tid)
        mean = shared_a[0] / n
        gmean = shared_b[0] / n
        cuda.syncthreads()  # the means are read by every thread before the arrays are reused
        s = 1.0
        coef = 0.0
        if normalize_variance:
            acc = 0.0
            gacc = 0.0
            for j in range(tid, n, ROW_THREADS):
                d = x[row, j] - mean
                acc += d * d
                gacc += dy[row, j] * d
            shared_a[tid] = acc
            shared_b[tid] = gacc
            cuda.syncthreads()  # partial sums written before the trees read them
            block_sum(shared_a, tid)
            block_sum(shared_b, tid)
            std = math.sqrt(shared_a[0] / n)
            s = std + eps
            if std > 0.0:
                coef = shared_b[0] / (n * std * s * s)
            cuda.syncthreads()  # the sums are read by every thread before the next row
        for j in range(tid, n, ROW_THREADS):
            dx[row, j] = (dy[row, j] - gmean) / s - (x[row, j] - mean) * coef


@register_kernel("MVNGradient", CUDA)
def mvn_grad_launch(x, dy, normalize_variance, eps, dx):
    """Launcher with mvn_grad_cpu's signature."""
    mvn_grad_kernel[_row_blocks(x.shape[0]), ROW_THREADS](x, dy, normalize_variance, eps, dx)
