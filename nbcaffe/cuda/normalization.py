"""CUDA kernels for nbcaffe/ops/normalization.py (same ops, same order, same launcher arguments).

Channel statistics (SpatialBN, InstanceNorm) run one block per (g, c) pair of the (G, A, C, B)
view with shared-memory tree reductions; per-channel finalisation runs one thread per channel;
the normalisation itself is one thread per element.  LayerNorm runs one block per row.  LRN
runs one thread per element (each sums its channel window).
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.ops import normalization as cpu
from nbcaffe.registry import register_kernel

neg_pow = cuda.jit(device=True)(cpu._neg_pow)


def _row_blocks(n):
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


def _moments(x, stats):
    if x.shape[0] * x.shape[2]:
        moments_kernel[_row_blocks(x.shape[0] * x.shape[2]), ROW_THREADS](x, stats)


def _affine(x, stats, alpha, bias, y):
    if x.size:
        affine_kernel[blocks_for(x.size), THREADS](x, stats, alpha, bias, y)


# ------------------------------------------------------------------------ SpatialBN


@cuda.jit
def bn_train_finalize_kernel(stats, scale, running_mean, running_var, momentum, eps, n, saved_mean, saved_rstd,
                             alpha):
    """Per channel: running stats blended, saved mean / rstd, alpha = scale * rstd (n = count)."""
    for c in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        if n == 0:
            saved_mean[c] = 0.0
            saved_rstd[c] = 0.0
            alpha[0, c] = 0.0
            continue
        m = stats[0, 0, c]
        v = stats[1, 0, c]
        running_mean[c] = running_mean[c] * momentum + m * (1.0 - momentum)
        running_var[c] = running_var[c] * momentum + v * (1.0 - momentum)
        r = 1.0 / math.sqrt(v + eps)
        saved_mean[c] = m
        saved_rstd[c] = r
        alpha[0, c] = scale[c] * r


@cuda.jit
def bn_test_prepare_kernel(scale, mean, var, eps, stats, alpha):
    """Per channel: stats[0, 0, c] = mean[c], alpha[0, c] = scale[c] / sqrt(var[c] + eps)."""
    for c in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        stats[0, 0, c] = mean[c]
        alpha[0, c] = scale[c] / math.sqrt(var[c] + eps)


def spatial_bn_train_launch(x, scale, bias, running_mean, running_var, momentum, eps, saved_mean, saved_rstd,
                            stats, alpha, y):
    """Launcher with spatial_bn_train_cpu's signature."""
    c = x.shape[2]
    if c == 0:
        return
    _moments(x, stats)
    bn_train_finalize_kernel[blocks_for(c), THREADS](stats, scale, running_mean, running_var, momentum, eps,
                                                     x.shape[1] * x.shape[3], saved_mean, saved_rstd, alpha)
    _affine(x, stats, alpha, bias, y)


def spatial_bn_test_launch(x, scale, bias, mean, var, eps, stats, alpha, y):
    """Launcher with spatial_bn_test_cpu's signature."""
    if x.shape[2] == 0:
        return
    bn_test_prepare_kernel[blocks_for(x.shape[2]), THREADS](scale, mean, var, eps, stats, alpha)
    _affine(x, stats, alpha, bias, y)


register_kernel("SpatialBN", CUDA)(cpu.Kernels(train=spatial_bn_train_launch, test=spatial_bn_test_launch))


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
        grad_sums_kernel[_row_blocks(x.shape[0] * c), ROW_THREADS](x, dy, mean, sums)
    grad_coef_kernel[blocks_for(c), THREADS](scale, second, eps, frozen, x.shape[1] * x.shape[3], sums, coef,
                                             dscale, dbias)
    if x.size:
        grad_dx_kernel[blocks_for(x.size), THREADS](x, dy, mean, coef, dx)


register_kernel("SpatialBNGradient", CUDA)(norm_grad_launch)


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
    _moments(x, stats)
    instance_finalize_kernel[blocks_for(x.shape[0] * x.shape[2]), THREADS](stats, scale, eps, saved_mean,
                                                                           saved_rstd, alpha)
    _affine(x, stats, alpha, bias, y)


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
    _moments(x, stats)
    stats_to_rstd_kernel[blocks_for(mean.size), THREADS](stats, eps, mean, rstd)


register_kernel("InstanceNormGradient", CUDA)(cpu.Kernels(stats=instance_stats_launch, grad=norm_grad_launch))


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
    layer_norm_kernel[_row_blocks(x.shape[0]), ROW_THREADS](x, gamma, beta, affine, eps, mean, std, y)


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
        layer_norm_grad_rows_kernel[_row_blocks(x.shape[0]), ROW_THREADS](dy, x, mean, std, gamma, affine, dx)
    if affine:
        layer_norm_grad_params_kernel[blocks_for(x.shape[1]), THREADS](dy, x, mean, std, dgamma, dbeta)


# ------------------------------------------------------------------------ LRN


@cuda.jit(device=True)
def lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias):
    """bias + alpha_over_size * sum of x[a, c', b]**2 over the clipped window of channel c."""
    lo = max(0, c - pre)
    hi = min(x.shape[1], c - pre + size)
    acc = 0.0
    for cc in range(lo, hi):
        v = x[a, cc, b]
        acc += v * v
    return bias + alpha_over_size * acc


@cuda.jit
def lrn_kernel(x, size, pre, alpha_over_size, beta, bias, scale, y):
    """scale and y = x * scale**-beta, one thread per element of the (A, C, B) views."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        s = lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias)
        scale[a, c, b] = s
        y[a, c, b] = x[a, c, b] * neg_pow(s, beta)


@register_kernel("LRN", CUDA)
def lrn_launch(x, size, pre, alpha_over_size, beta, bias, scale, y):
    """Launcher with lrn_cpu's signature."""
    lrn_kernel[blocks_for(x.size), THREADS](x, size, pre, alpha_over_size, beta, bias, scale, y)


@cuda.jit
def lrn_ratio_kernel(x, y, scale, dy, recompute, size, pre, alpha_over_size, bias, ratio):
    """ratio = dy * y / scale per element; ``recompute`` first writes scale from x."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        if recompute:
            s = lrn_window_scale(x, a, c, b, size, pre, alpha_over_size, bias)
            scale[a, c, b] = s
        else:
            s = scale[a, c, b]
        ratio[a, c, b] = dy[a, c, b] * y[a, c, b] / s


@cuda.jit
def lrn_grad_kernel(x, scale, dy, size, pre, alpha_over_size, beta, ratio, dx):
    """dx = dy * scale**-beta - 2 * alpha_over_size * beta * x * (sum of ratio over the channels
    whose window contains this one)."""
    n_c = x.shape[1]
    n_b = x.shape[2]
    post = size - 1 - pre
    coef = 2.0 * alpha_over_size * beta
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        b = i % n_b
        t = i // n_b
        c = t % n_c
        a = t // n_c
        lo = max(0, c - post)
        hi = min(n_c, c + pre + 1)
        acc = 0.0
        for cc in range(lo, hi):
            acc += ratio[a, cc, b]
        dx[a, c, b] = dy[a, c, b] * neg_pow(scale[a, c, b], beta) - coef * x[a, c, b] * acc


@register_kernel("LRNGradient", CUDA)
def lrn_grad_launch(x, y, scale, dy, recompute, size, pre, alpha_over_size, beta, bias, ratio, dx):
    """Launcher with lrn_grad_cpu's signature."""
    blocks = blocks_for(x.size)
    lrn_ratio_kernel[blocks, THREADS](x, y, scale, dy, recompute, size, pre, alpha_over_size, bias, ratio)
    lrn_grad_kernel[blocks, THREADS](x, scale, dy, size, pre, alpha_over_size, beta, ratio, dx)
