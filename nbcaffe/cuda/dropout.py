"""CUDA kernels for nbcaffe/ops/dropout.py.

Masks come from the counter-based generator of nbcaffe/cuda/fill.py: element i of launch
``counter`` keeps when uniform01(seed, counter, i) >= ratio, so every thread draws its own
element independently and each run (a new counter) draws a new mask.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.cuda.fill import uniform01
from nbcaffe.devices import CUDA
from nbcaffe.ops import dropout as cpu
from nbcaffe.registry import register_kernel

MASK_STREAM = 3  # generator stream of dropout masks (the fills use streams 0-2)


@cuda.jit
def dropout_train_kernel(x, y, mask, ratio, scale, seed, counter):
    """mask[i] = U(0, 1) >= ratio; y[i] = x[i] * scale * mask[i] (flat; y may alias x)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        keep = uniform01(seed, counter, i, MASK_STREAM) >= ratio
        mask[i] = keep
        v = x[i] * scale
        y[i] = v if keep else v * 0.0


def dropout_train_launch(rng, x, y, mask, uniforms, ratio, scale):
    """Launcher with dropout_cpu's signature (``uniforms`` is the CPU's scratch; unused here)."""
    if x.size:
        dropout_train_kernel[blocks_for(x.size), THREADS](x, y, mask, ratio, scale, rng.seed, rng.next())


@cuda.jit
def dropout_test_kernel(x, y, mask, copy):
    """y = x unless in place; every mask element True."""
    for i in range(cuda.grid(1), max(x.size, mask.size), cuda.gridsize(1)):
        if copy and i < x.size:
            y[i] = x[i]
        if i < mask.size:
            mask[i] = True


def dropout_test_launch(x, y, mask, copy):
    """Launcher with dropout_test_cpu's signature."""
    n = max(x.size, mask.size)
    if n:
        dropout_test_kernel[blocks_for(n), THREADS](x, y, mask, copy)


register_kernel("Dropout", CUDA)(cpu.Kernels(dropout_train_launch, dropout_test_launch))


@cuda.jit
def dropout_grad_kernel(dy, mask, dx, scale, use_mask):
    """dx = dy * scale * mask (``use_mask``) or dx = dy."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        if use_mask:
            v = dy[i] * scale
            dx[i] = v if mask[i] else v * 0.0
        else:
            dx[i] = dy[i]


@register_kernel("DropoutGrad", CUDA)
def dropout_grad_launch(dy, mask, dx, scale, use_mask):
    """Launcher with dropout_grad_cpu's signature."""
    if dy.size:
        dropout_grad_kernel[blocks_for(dy.size), THREADS](dy, mask, dx, scale, use_mask)
