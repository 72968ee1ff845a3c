"""CUDA kernels shared by nbcaffe/cuda/batch_norm.py (SpatialBN) and nbcaffe/cuda/normalization.py
(InstanceNorm, LayerNorm); the mirror of nbcaffe/ops/_norm_kernels.py.

Channel statistics (SpatialBN, InstanceNorm) run one block per (g, c) pair of the (G, A, C, B)
view with shared-memory tree reductions; per-channel finalisation runs one thread per channel;
the normalisation itself is one thread per element.  ``norm_grad_launch`` is the CUDA form of
``norm_grad_cpu`` (SpatialBNGradient, InstanceNormGradient).
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda.activation import block_sum


def row_blocks(n):
    return max(1, min(n, 4096))


# ------------------------------------------------------------------------ shared pieces


@cuda.jit
def moments_kernel(x, stats):
    """stats[0, g, c] = mean, stats[1, g, c] = biased variance of x (G, A, C, B) over A and B;
    one block per (g, c) pair (grid-stride), two passes."""
    shared_sum = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_sq = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n_c = x.shape[2]
    n_b = x.shape[3]
    n = x.shape[1] * n_b
    for p in range(cuda.blockIdx.x, x.shape[0] * n_c, cuda.gridDim.x):
        g = p // n_c
        c = p - g * n_c
        acc = 0.0
        for k in range(tid, n, ROW_THREADS):
            a = k // n_b
            acc += x[g, a, c, k - a * n_b]
        shared_sum[tid] = acc
        cuda.syncthreads()  # every partial sum is written before the tree reads them
        block_sum(shared_sum, tid)
        mean = shared_sum[0] / n if n > 0 else 0.0
        acc = 0.0
        for k in range(tid, n, ROW_THREADS):
            a = k // n_b
            d = x[g, a, c, k - a * n_b] - mean
            acc += d * d
        shared_sq[tid] = acc
        cuda.syncthreads()  # every partial sum of squares is written before the tree reads them
        block_sum(shared_sq, tid)
        if tid == 0:
            stats[0, g, c] = mean
            stats[1, g, c] = shared_sq[0] / n if n > 0 else 0.0
        cuda.syncthreads()  # shared_sum[0] / shared_sq[0] are read before the next pair overwrites them


@cuda.jit
def affine_kernel(x, stats, alpha, bias, y):
    """y[g, a, c, b] = (x[g, a, c, b] - stats[0, g, c]) * alpha[g, c] + bias[c]; y may alias x."""
    n_a = x.shape[1]
    n_c = x.shape[2]
    n_b = x.shape[3]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        t //= n_c
        a = t % n_a
        g = t // n_a
        y[g, a, c, b] = (x[g, a, c, b] - stats[0, g, c]) * alpha[g, c] + bias[c]


def moments_launch(x, stats):
    if x.shape[0] * x.shape[2]:
        moments_kernel[row_blocks(x.shape[0] * x.shape[2]), ROW_THREADS](x, stats)


def affine_launch(x, stats, alpha, bias, y):
    if x.size:
        affine_kernel[blocks_for(x.size), THREADS](x, stats, alpha, bias, y)


# ------------------------------------------------------------------------ SpatialBN / InstanceNorm gradient


@cuda.jit
def grad_sums_kernel(x, dy, mean, sums):
    """sums[0, g, c] = sum dy, sums[1, g, c] = sum dy * (x - mean[g, c]) over A and B; one block
    per (g, c) pair."""
    shared_dy = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_dyx = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n_c = x.shape[2]
    n_b = x.shape[3]
    n = x.shape[1] * n_b
    for p in range(cuda.blockIdx.x, x.shape[0] * n_c, cuda.gridDim.x):
        g = p // n_c
        c = p - g * n_c
        m = mean[g, c]
        acc0 = 0.0
        acc1 = 0.0
        for k in range(tid, n, ROW_THREADS):
            a = k // n_b
            b = k - a * n_b
            d = dy[g, a, c, b]
            acc0 += d
            acc1 += d * (x[g, a, c, b] - m)
        shared_dy[tid] = acc0
        shared_dyx[tid] = acc1
        cuda.syncthreads()  # both partial sums are written before the trees read them
        block_sum(shared_dy, tid)
        block_sum(shared_dyx, tid)
        if tid == 0:
            sums[0, g, c] = shared_dy[0]
            sums[1, g, c] = shared_dyx[0]
        cuda.syncthreads()  # thread 0 has read the totals before the next pair overwrites them


@cuda.jit
def grad_coef_kernel(scale, second, eps, frozen, n, sums, coef, dscale, dbias):
    """Per channel c (looping over g): coef[0..2, g, c] of dx = k0 * dy + k1 * (x - mean) + k2,
    dscale[c] = sum_g rstd * sums[1], dbias[c] = sum_g sums[0] (see norm_grad_cpu)."""
    n_g = sums.shape[1]
    for c in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        ds = 0.0
        db = 0.0
        for g in range(n_g):
            r = 1.0 / math.sqrt(second[g, c] + eps) if frozen else second[g, c] * 1.0
            k = scale[c] * r
            coef[0, g, c] = k
            if frozen or n == 0:
                coef[1, g, c] = 0.0
                coef[2, g, c] = 0.0
            else:
                coef[1, g, c] = -k * r * r * sums[1, g, c] / n
                coef[2, g, c] = -k * sums[0, g, c] / n
            ds += r * sums[1, g, c]
            db += sums[0, g, c]
        dscale[c] = ds
        dbias[c] = db


@cuda.jit
def grad_dx_kernel(x, dy, mean, coef, dx):
    """dx = coef0 * dy + coef1 * (x - mean) + coef2 per (g, c), one thread per element."""
    n_a = x.shape[1]
    n_c = x.shape[2]
    n_b = x.shape[3]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        t //= n_c
        a = t % n_a
        g = t // n_a
        dx[g, a, c, b] = (coef[0, g, c] * dy[g, a, c, b] + coef[1, g, c] * (x[g, a, c, b] - mean[g, c])
                          + coef[2, g, c])


def norm_grad_launch(x, dy, scale, mean, second, eps, frozen, sums, coef, dx, dscale, dbias):
    """Launcher with norm_grad_cpu's signature."""
    c = x.shape[2]
    if c == 0:
        return
    if x.shape[0] * c:
        grad_sums_kernel[row_blocks(x.shape[0] * c), ROW_THREADS](x, dy, mean, sums)
    grad_coef_kernel[blocks_for(c), THREADS](scale, second, eps, frozen, x.shape[1] * x.shape[3], sums, coef,
                                             dscale, dbias)
    if x.size:
        grad_dx_kernel[blocks_for(x.size), THREADS](x, dy, mean, coef, dx)
