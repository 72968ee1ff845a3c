"""Shared CUDA kernels of the reduction plan (mirror of nbcaffe/ops/_reduce_util.py), used by
the axis reductions (reduce_axes.py) and BatchMatMulGradient (linalg.py); ``_replaces`` also
serves ArgMax/ArgMin and Summarize (reduction.py).

The launchers take reduce_cpu / reduce_grad_cpu's arguments: flat x and y plus the plan
(dims, flags) of nbcaffe.ops._reduce_util.reduce_plan as device arrays.  An element's offset is
decoded from its index over the kept (flag 0) or the reduced (flag 1) groups.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.ops._reduce_util import MODE_MAX, MODE_SUM

BLOCK_REDUCE_MAX_OUTPUTS = 4096  # fewer outputs than this, each of >= ROW_THREADS terms: a block each


@cuda.jit(device=True)
def _replaces(v, current, take_max):
    """reduce_cpu's rule: v replaces the running max (min) when larger (smaller) or NaN, unless a
    NaN is already held (so NaN propagates in any order)."""
    return current == current and (v != v or (v > current if take_max else v < current))


@cuda.jit(device=True)
def _group_offset(index, dims, flags, which):
    """Flat x offset of the ``index``-th element counted in C order over the groups whose flag
    is ``which`` (0: an output position; 1: a position inside one reduction window)."""
    rest = index
    offset = 0
    step = 1
    for d in range(dims.size - 1, -1, -1):
        n = dims[d]
        if flags[d] == which:
            offset += (rest % n) * step
            rest //= n
        step *= n
    return offset


@cuda.jit
def reduce_threads_kernel(x, y, dims, flags, mode, scale, count):
    """y[j] = sum (times scale) / max / min of the ``count`` x elements of output j; one thread
    per output (adjacent threads read adjacent x where the innermost group is kept)."""
    take_max = mode == MODE_MAX
    for j in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        if count == 0:
            y[j] = 0.0 * scale  # an empty sum is 0; an empty mean NaN (scale is NaN then)
            continue
        base = _group_offset(j, dims, flags, 0)
        acc = x[base]
        for r in range(1, count):
            v = x[base + _group_offset(r, dims, flags, 1)]
            if mode == MODE_SUM:
                acc += v
            elif _replaces(v, acc, take_max):
                acc = v
        if mode == MODE_SUM and scale != 1.0:
            y[j] = acc * scale
        else:
            y[j] = acc


@cuda.jit
def reduce_block_kernel(x, y, dims, flags, mode, scale, count):
    """As reduce_threads_kernel with one block per output (grid-stride over outputs), for few
    outputs with many (>= ROW_THREADS) terms each; float inputs (float64 partials)."""
    partial = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    take_max = mode == MODE_MAX
    for j in range(cuda.blockIdx.x, y.size, cuda.gridDim.x):
        base = _group_offset(j, dims, flags, 0)
        # count >= ROW_THREADS, so every thread starts from a real element: no sentinel needed
        acc = 0.0 + x[base + _group_offset(tid, dims, flags, 1)]
        for r in range(tid + ROW_THREADS, count, ROW_THREADS):
            v = x[base + _group_offset(r, dims, flags, 1)]
            if mode == MODE_SUM:
                acc += v
            elif _replaces(v, acc, take_max):
                acc = v
        partial[tid] = acc
        cuda.syncthreads()  # every partial is written before the tree reads it
        step = ROW_THREADS // 2
        while step > 0:
            if tid < step:
                other = partial[tid + step]
                if mode == MODE_SUM:
                    partial[tid] += other
                elif _replaces(other, partial[tid], take_max):
                    partial[tid] = other
            cuda.syncthreads()  # this level is complete before the next one reads it
            step //= 2
        if tid == 0:
            y[j] = partial[0] * scale if mode == MODE_SUM else partial[0]
        cuda.syncthreads()  # thread 0 has read partial[0] before the next output overwrites it


def reduce_launch(x, y, dims, flags, mode, scale):
    """Launcher with reduce_cpu's signature (device arrays)."""
    if y.size == 0:
        return
    count = x.size // y.size
    if count >= ROW_THREADS and y.size < BLOCK_REDUCE_MAX_OUTPUTS and np.dtype(x.dtype).kind == "f":
        reduce_block_kernel[min(y.size, 4096), ROW_THREADS](x, y, dims, flags, mode, scale, count)
    else:
        reduce_threads_kernel[blocks_for(y.size), THREADS](x, y, dims, flags, mode, scale, count)


@cuda.jit
def reduce_grad_kernel(dy, x, y, dx, dims, flags, mode, scale):
    """dx[i] = dy[o] * scale (sums, means) or dy[o] where x[i] == y[o] else 0 (max, min), o being
    the output window of element i; one thread per dx element."""
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        rest = i
        o = 0
        step = 1
        for d in range(dims.size - 1, -1, -1):
            n = dims[d]
            if flags[d] == 0:
                o += (rest % n) * step
                step *= n
            rest //= n
        if mode == MODE_SUM:
            dx[i] = dy[o] * scale
        elif x[i] == y[o]:
            dx[i] = dy[o]
        else:
            dx[i] = 0


def reduce_grad_launch(dy, x, y, dx, dims, flags, mode, scale):
    """Launcher with reduce_grad_cpu's signature (device arrays)."""
    if dx.size:
        reduce_grad_kernel[blocks_for(dx.size), THREADS](dy, x, y, dx, dims, flags, mode, scale)
