"""CUDA kernels for nbcaffe/ops/loss.py (same ops, same order): one thread per row for
SquaredL2Distance, a one-block tree sum for AveragedLoss, one thread per element for the
gradients."""

from __future__ import annotations

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def squared_l2_kernel(x, y, out):
    """out[i] = 0.5 * sum_j (x[i, j] - y[i, j])**2; one thread per row."""
    n = x.shape[0]
    d = x.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        total = 0.0
        for j in range(d):
            diff = x[i, j] - y[i, j]
            total += diff * diff
        out[i] = 0.5 * total


@register_kernel("SquaredL2Distance", CUDA)
def squared_l2_launch(x, y, out):
    squared_l2_kernel[blocks_for(x.shape[0]), THREADS](x, y, out)


@cuda.jit
def mean_kernel(x, out):
    """out[0] = mean(x) (0 for empty x); one block."""
    shared = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, x.size, ROW_THREADS):
        acc += x[i]
    shared[tid] = acc
    cuda.syncthreads()  # partial sums visible before reducing
    block_sum(shared, tid)
    if tid == 0:
        out[0] = shared[0] / x.size if x.size else 0.0


@register_kernel("AveragedLoss", CUDA)
def averaged_loss_launch(x, out):
    mean_kernel[1, ROW_THREADS](x, out)


# ----------------------------------------------------------------------------- gradients


@cuda.jit
def squared_l2_grad_kernel(x, y, dd, dx, dy):
    """dx[i, j] = (x[i, j] - y[i, j]) * dd[i], dy = -dx; one thread per element."""
    n = x.shape[0]
    d = x.shape[1]
    for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
        i = k // d
        j = k - i * d
        g = (x[i, j] - y[i, j]) * dd[i]
        dx[i, j] = g
        dy[i, j] = -g


@register_kernel("SquaredL2DistanceGradient", CUDA)
def squared_l2_grad_launch(x, y, dd, dx, dy):
    n, d = tuple(x.shape)
    if n * d:
        squared_l2_grad_kernel[blocks_for(n * d), THREADS](x, y, dd, dx, dy)


@cuda.jit
def fill_mean_grad_kernel(dloss, dx):
    """dx[i] = dloss[0] / dx.size."""
    value = dloss[0] / dx.size
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = value


@register_kernel("AveragedLossGradient", CUDA)
def averaged_loss_grad_launch(dloss, dx):
    """Launcher with averaged_loss_grad_cpu's signature (flat device arrays)."""
    if dx.size:
        fill_mean_grad_kernel[blocks_for(dx.size), THREADS](dloss, dx)
