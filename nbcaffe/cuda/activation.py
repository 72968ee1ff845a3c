"""CUDA kernels for nbcaffe/ops/activation.py (same ops, same order)."""

from __future__ import annotations

import math

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import activation as cpu
from nbcaffe.registry import register_kernel

register_kernel("Relu", CUDA)(unary_elementwise(cpu.relu))
register_kernel("LeakyRelu", CUDA)(unary_elementwise(cpu.leaky_relu, 1))
register_kernel("Sigmoid", CUDA)(unary_elementwise(cpu.sigmoid))
register_kernel("Tanh", CUDA)(unary_elementwise(cpu.tanh))
register_kernel("Elu", CUDA)(unary_elementwise(cpu.elu, 1))


@cuda.jit(device=True)
def block_max(values, tid):
    """Tree-reduce values[0:ROW_THREADS] to its maximum in values[0] (all threads call it)."""
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step and values[tid + step] > values[tid]:
            values[tid] = values[tid + step]
        cuda.syncthreads()  # every thread must see this level's results before the next
        step //= 2


@cuda.jit(device=True)
def block_sum(values, tid):
    """Tree-reduce values[0:ROW_THREADS] to its sum in values[0] (all threads call it)."""
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step:
            values[tid] += values[tid + step]
        cuda.syncthreads()  # every thread must see this level's results before the next
        step //= 2


@cuda.jit
def softmax_kernel(x, y):
    """Row softmax of x (N, D) into y (N, D): one block per row, grid-stride over rows."""
    shared_max = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_sum = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n = x.shape[0]
    d = x.shape[1]
    for row in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        m = -math.inf
        for j in range(tid, d, ROW_THREADS):
            if x[row, j] > m:
                m = x[row, j]
        shared_max[tid] = m
        cuda.syncthreads()  # all partial maxima written before the reduction reads them
        block_max(shared_max, tid)
        m = shared_max[0]
        acc = 0.0
        for j in range(tid, d, ROW_THREADS):
            e = math.exp(x[row, j] - m)
            y[row, j] = e
            acc += e
        shared_sum[tid] = acc
        cuda.syncthreads()  # all partial sums written before the reduction reads them
        block_sum(shared_sum, tid)
        inv = 1.0 / shared_sum[0]
        for j in range(tid, d, ROW_THREADS):
            y[row, j] *= inv
        cuda.syncthreads()  # the shared arrays are reused by this block's next row


@register_kernel("Softmax", CUDA)
def softmax_launch(x, y):
    """Launcher with softmax_cpu's signature: x, y (N, D) device arrays."""
    softmax_kernel[max(1, min(x.shape[0], 4096)), ROW_THREADS](x, y)
