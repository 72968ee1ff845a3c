"""CUDA kernels for nbcaffe/ops/nonlinearity.py (same ops, same order)."""

from __future__ import annotations

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, binary_elementwise, blocks_for, unary_elementwise
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.ops import nonlinearity as cpu
from nbcaffe.registry import register_kernel


@cuda.jit
def prelu_kernel(x, w, y):
    """y = x where x > 0, else w[c] * x, for x, y (outer, C, inner); one thread per element."""
    channels = x.shape[1]
    inner = x.shape[2]
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        o = idx // (channels * inner)
        c = (idx // inner) % channels
        i = idx % inner
        v = x[o, c, i]
        y[o, c, i] = v if v > 0 else v * w[c]


@register_kernel("PRelu", CUDA)
def prelu_launch(x, w, y):
    """Launcher with prelu_cpu's signature."""
    if x.size:
        prelu_kernel[blocks_for(x.size), THREADS](x, w, y)


@cuda.jit
def prelu_dx_kernel(dy, x, w, dx):
    """dx = dy where x > 0, else w[c] * dy ((outer, C, inner) arrays); one thread per element."""
    channels = x.shape[1]
    inner = x.shape[2]
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        o = idx // (channels * inner)
        c = (idx // inner) % channels
        i = idx % inner
        g = dy[o, c, i]
        dx[o, c, i] = g if x[o, c, i] > 0 else g * w[c]


@cuda.jit
def prelu_dw_kernel(dy, x, dw):
    """dw[c] = Σ dy * x over the elements of channel c with x <= 0 (not x > 0, as the CPU kernel);
    one block per channel (grid-stride over channels), tree sum in shared memory."""
    partial = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    outer = x.shape[0]
    channels = x.shape[1]
    inner = x.shape[2]
    for c in range(cuda.blockIdx.x, channels, cuda.gridDim.x):
        acc = 0.0
        for r in range(tid, outer * inner, ROW_THREADS):
            o = r // inner
            i = r % inner
            v = x[o, c, i]
            if not v > 0:
                acc += dy[o, c, i] * v
        partial[tid] = acc
        cuda.syncthreads()  # every partial sum is written before the tree reads it
        block_sum(partial, tid)
        if tid == 0:
            dw[c] = partial[0]
        cuda.syncthreads()  # thread 0 has read partial[0] before the next channel overwrites it


@register_kernel("PReluGradient", CUDA)
def prelu_grad_launch(dy, x, w, dx, dw):
    """Launcher with prelu_grad_cpu's signature."""
    if x.size:
        prelu_dx_kernel[blocks_for(x.size), THREADS](dy, x, w, dx)
    channels = dw.size
    if channels:
        prelu_dw_kernel[min(channels, 4096), ROW_THREADS](dy, x, dw)


register_kernel("Softplus", CUDA)(unary_elementwise(cpu.softplus))
register_kernel("SoftplusGradient", CUDA)(binary_elementwise(cpu.softplus_grad).same)
