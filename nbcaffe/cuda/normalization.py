"""CUDA kernels for nbcaffe/ops/normalization.py (same ops, same order, same launcher arguments).

InstanceNorm uses the shared moments / affine / gradient kernels of nbcaffe/cuda/_norm_kernels.py
(one block per (n, c) pair) and finalises one thread per (n, c).  LayerNorm runs one block per
row.
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda._norm_kernels import affine_launch, moments_launch, norm_grad_launch, row_blocks
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.ops._norm_kernels import Kernels
from nbcaffe.registry import register_kernel

# ------------------------------------------------------------------------ InstanceNorm


@cuda.jit
def instance_finalize_kernel(stats, scale, eps, saved_mean, saved_rstd, alpha):
    """Per (g, c): saved mean / rstd and alpha = scale[c] * rstd."""
    n_c = scale.size
    for p in range(cuda.grid(1), stats.shape[1] * n_c, cuda.gridsize(1)):
        g = p // n_c
        c = p - g * n_c
        r = 1.0 / math.sqrt(stats[1, g, c] + eps)
        saved_mean[g, c] = stats[0, g, c]
        saved_rstd[g, c] = r
        alpha[g, c] = scale[c] * r


def instance_norm_launch(x, scale, bias, eps, saved_mean, saved_rstd, stats, alpha, y):
    """Launcher with instance_norm_cpu's signature."""
    moments_launch(x, stats)
    instance_finalize_kernel[blocks_for(x.shape[0] * x.shape[2]), THREADS](stats, scale, eps, saved_mean,
                                                                           saved_rstd, alpha)
    affine_launch(x, stats, alpha, bias, y)


register_kernel("InstanceNorm", CUDA)(instance_norm_launch)


@cuda.jit
def stats_to_rstd_kernel(stats, eps, mean, rstd):
    """mean[g, c] = stats[0, g, c], rstd[g, c] = 1 / sqrt(stats[1, g, c] + eps)."""
    n_c = mean.shape[1]
    for p in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        g = p // n_c
        c = p - g * n_c
        mean[g, c] = stats[0, g, c]
        rstd[g, c] = 1.0 / math.sqrt(stats[1, g, c] + eps)


def instance_stats_launch(x, eps, mean, rstd, stats):
    """Launcher with instance_stats_cpu's signature."""
    moments_launch(x, stats)
    stats_to_rstd_kernel[blocks_for(mean.size), THREADS](stats, eps, mean, rstd)


register_kernel("InstanceNormGradient", CUDA)(Kernels(stats=instance_stats_launch, grad=norm_grad_launch))


# ------------------------------------------------------------------------ LayerNorm


@cuda.jit
def layer_norm_kernel(x, gamma, beta, affine, eps, mean, std, y):
    """Row-wise layer norm of x (M, N) (see layer_norm_cpu); one block per row, grid-stride."""
    shared_sum = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_sq = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n = x.shape[1]
    for row in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, n, ROW_THREADS):
            acc += x[row, j]
        shared_sum[tid] = acc
        cuda.syncthreads()  # partial sums written before the tree reads them
        block_sum(shared_sum, tid)
        mu = shared_sum[0] / n
        acc = 0.0
        for j in range(tid, n, ROW_THREADS):
            d = x[row, j] - mu
            acc += d * d
        shared_sq[tid] = acc
        cuda.syncthreads()  # partial sums of squares written before the tree reads them
        block_sum(shared_sq, tid)
        sigma = math.sqrt(shared_sq[0] / n + eps)
        r = 1.0 / sigma
        if tid == 0:
            mean[row] = mu
            std[row] = sigma
        for j in range(tid, n, ROW_THREADS):
            if affine:
                y[row, j] = (x[row, j] - mu) * r * gamma[j] + beta[j]
            else:
                y[row, j] = (x[row, j] - mu) * r
        cuda.syncthreads()  # shared_sum[0] / shared_sq[0] are read before the next row overwrites them


@register_kernel("LayerNorm", CUDA)
def layer_norm_launch(x, gamma, beta, affine, eps, mean, std, y):
    """Launcher with layer_norm_cpu's signature."""
    layer_norm_kernel[row_blocks(x.shape[0]), ROW_THREADS](x, gamma, beta, affine, eps, mean, std, y)


@cuda.jit
def layer_norm_grad_rows_kernel(dy, x, mean, std, gamma, affine, dx):
    """dx = r * (g - mean(g) - xhat * mean(g * xhat)) per row (see layer_norm_grad_cpu); one block
    per row."""
    shared_g = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_gx = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n = x.shape[1]
    for row in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
        mu = mean[row]
        r = 1.0 / std[row]
        acc0 = 0.0
        acc1 = 0.0
        for j in range(tid, n, ROW_THREADS):
            g = dy[row, j] * gamma[j] if affine else dy[row, j] * 1.0
            acc0 += g
            acc1 += g * (x[row, j] - mu)
        shared_g[tid] = acc0
        shared_gx[tid] = acc1
        cuda.syncthreads()  # partial sums written before the trees read them
        block_sum(shared_g, tid)
        block_sum(shared_gx, tid)
        s1 = shared_g[0] / n
        s2 = shared_gx[0] / n * r
        for j in range(tid, n, ROW_THREADS):
            g = dy[row, j] * gamma[j] if affine else dy[row, j] * 1.0
            dx[row, j] = r * (g - s1 - (x[row, j] - mu) * r * s2)
        cuda.syncthreads()  # the totals are read before the next row overwrites them


@cuda.jit
def layer_norm_grad_params_kernel(dy, x, mean, std, dgamma, dbeta):
    """dgamma[j] = sum over rows of dy * xhat, dbeta[j] = sum of dy; one thread per column
    (adjacent threads read adjacent columns)."""
    for j in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        acc_g = 0.0
        acc_b = 0.0
        for row in range(x.shape[0]):
            d = dy[row, j]
            acc_g += d * (x[row, j] - mean[row]) / std[row]
            acc_b += d
        dgamma[j] = acc_g
        dbeta[j] = acc_b


@register_kernel("LayerNormGradient", CUDA)
def layer_norm_grad_launch(dy, x, mean, std, gamma, affine, acc, dx, dgamma, dbeta):
    """Launcher with layer_norm_grad_cpu's signature (acc is unused: columns sum in registers)."""
    if x.shape[0]:
        layer_norm_grad_rows_kernel[row_blocks(x.shape[0]), ROW_THREADS](dy, x, mean, std, gamma, affine, dx)
    if affine:
        layer_norm_grad_params_kernel[blocks_for(x.shape[1]), THREADS](dy, x, mean, std, dgamma, dbeta)
