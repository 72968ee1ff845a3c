"""CUDA kernels for nbcaffe/ops/batch_norm.py (same ops, same order, same launcher arguments).

Batch statistics come from the shared moments / affine / gradient kernels of
nbcaffe/cuda/_norm_kernels.py; the per-channel finalisation here runs one thread per channel.
"""

from __future__ import annotations

import math

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.cuda._norm_kernels import affine_launch, moments_launch, norm_grad_launch
from nbcaffe.devices import CUDA
from nbcaffe.ops._norm_kernels import Kernels
from nbcaffe.registry import register_kernel


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
    moments_launch(x, stats)
    bn_train_finalize_kernel[blocks_for(c), THREADS](stats, scale, running_mean, running_var, momentum, eps,
                                                     x.shape[1] * x.shape[3], saved_mean, saved_rstd, alpha)
    affine_launch(x, stats, alpha, bias, y)


def spatial_bn_test_launch(x, scale, bias, mean, var, eps, stats, alpha, y):
    """Launcher with spatial_bn_test_cpu's signature."""
    if x.shape[2] == 0:
        return
    bn_test_prepare_kernel[blocks_for(x.shape[2]), THREADS](scale, mean, var, eps, stats, alpha)
    affine_launch(x, stats, alpha, bias, y)


register_kernel("SpatialBN", CUDA)(Kernels(train=spatial_bn_train_launch, test=spatial_bn_test_launch))
register_kernel("SpatialBNGradient", CUDA)(norm_grad_launch)
