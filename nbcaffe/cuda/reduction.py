"""CUDA kernels for nbcaffe/ops/reduction.py (the axis reductions' are in reduce_axes.py)."""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda._reduce_util import _replaces
from nbcaffe.cuda._reduce_util import reduce_launch as reduce_launch  # re-exported: cuda/linalg.py imports it here
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def sum_elements_kernel(x, squared, average, out):
    """out[0] = Σ x (or Σ x²), divided by x.size when average; one block."""
    shared = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, x.size, ROW_THREADS):
        acc += x[i] * x[i] if squared else x[i]
    shared[tid] = acc
    cuda.syncthreads()  # partial sums visible before reducing
    block_sum(shared, tid)
    if tid == 0:
        out[0] = shared[0] / x.size if average and x.size else shared[0]


@register_kernel("SumElements", CUDA)
def sum_elements_launch(x, average, out):
    sum_elements_kernel[1, ROW_THREADS](x, False, average, out)


@register_kernel("SumSqrElements", CUDA)
def sum_sqr_elements_launch(x, average, out):
    sum_elements_kernel[1, ROW_THREADS](x, True, average, out)


@cuda.jit
def sum_elements_grad_kernel(x, dy, scale_by_x, average, dx):
    """dx = dy[0] (* 2x) (/ N)."""
    g = dy[0] / x.size if average and x.size else dy[0]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        dx[i] = 2.0 * x[i] * g if scale_by_x else g


def sum_elements_grad_launch(x, dy, scale_by_x, average, dx):
    sum_elements_grad_kernel[blocks_for(x.size), THREADS](x, dy, scale_by_x, average, dx)


register_kernel("SumElementsGradient", CUDA)(sum_elements_grad_launch)
register_kernel("SumSqrElementsGradient", CUDA)(sum_elements_grad_launch)


@cuda.jit
def copy_kernel(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[i]


@cuda.jit
def extreme_step_kernel(x, take_max, out):
    """out[i] = max(out[i], x[i]) (or min)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if (x[i] > out[i]) if take_max else (x[i] < out[i]):
            out[i] = x[i]


def extreme_launch(xs, take_max, out):
    """Launcher with extreme_cpu's signature: xs a tuple of flat device arrays."""
    blocks = blocks_for(out.size)
    copy_kernel[blocks, THREADS](xs[0], out)
    for x in xs[1:]:
        extreme_step_kernel[blocks, THREADS](x, take_max, out)


register_kernel("Max", CUDA)(extreme_launch)
register_kernel("Min", CUDA)(extreme_launch)


@cuda.jit
def extreme_grad_kernel(y, dy, x, dx):
    """dx = dy where x == y else 0."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] if x[i] == y[i] else 0.0


def extreme_grad_launch(y, dy, x, dx):
    extreme_grad_kernel[blocks_for(y.size), THREADS](y, dy, x, dx)


register_kernel("MaxGradient", CUDA)(extreme_grad_launch)
register_kernel("MinGradient", CUDA)(extreme_grad_launch)


@cuda.jit
def arg_kernel(x, take_max, y):
    """y[o, j] (int64) = index along n of the max (min) of x[o, :, j] for x (outer, n, inner);
    strictly better wins (ties: smallest index; the first NaN wins).  One thread per output."""
    n = x.shape[1]
    inner = x.shape[2]
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        o = idx // inner
        j = idx % inner
        best = 0
        for k in range(1, n):
            if _replaces(x[o, k, j], x[o, best, j], take_max):
                best = k
        y[o, j] = best


def arg_launch(x, take_max, y):
    """Launcher with arg_cpu's signature."""
    if y.size:
        arg_kernel[blocks_for(y.size), THREADS](x, take_max, y)


register_kernel("ArgMax", CUDA)(arg_launch)
register_kernel("ArgMin", CUDA)(arg_launch)


@cuda.jit
def summarize_kernel(x, out):
    """out = [min, max, mean, sample std] of flat x (size >= 1); one block, two passes."""
    low = cuda.shared.array(ROW_THREADS, numba.float64)
    high = cuda.shared.array(ROW_THREADS, numba.float64)
    sums = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    size = x.size
    lo = 0.0 + x[tid if tid < size else 0]  # a real element: no sentinel for min and max
    hi = lo
    total = 0.0
    for i in range(tid, size, ROW_THREADS):
        v = x[i]
        if _replaces(v, lo, False):
            lo = v
        if _replaces(v, hi, True):
            hi = v
        total += v
    low[tid] = lo
    high[tid] = hi
    sums[tid] = total
    cuda.syncthreads()  # every partial is written before the trees read them
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step:
            if _replaces(low[tid + step], low[tid], False):
                low[tid] = low[tid + step]
            if _replaces(high[tid + step], high[tid], True):
                high[tid] = high[tid + step]
            sums[tid] += sums[tid + step]
        cuda.syncthreads()  # this level is complete before the next one reads it
        step //= 2
    mean = sums[0] / size
    cuda.syncthreads()  # every thread has read sums[0] before the second pass reuses sums
    sq = 0.0
    for i in range(tid, size, ROW_THREADS):
        diff = x[i] - mean
        sq += diff * diff
    sums[tid] = sq
    cuda.syncthreads()  # every partial is written before the tree reads it
    block_sum(sums, tid)
    if tid == 0:
        out[0] = low[0]
        out[1] = high[0]
        out[2] = mean
        out[3] = math.sqrt(sums[0] / (size - 1)) if size > 1 else 0.0


@register_kernel("Summarize", CUDA)
def summarize_launch(x, out):
    """Launcher with summarize_cpu's signature: flat x, out (4,) on the device."""
    summarize_kernel[1, ROW_THREADS](x, out)
