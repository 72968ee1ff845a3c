"""CUDA kernels for nbcaffe/ops/activation.py (same ops, same order)."""

from __future__ import annotations

import math

import numba
from numba import cuda

# block_max/block_sum live in _launch (shared with its factories); loss.py and reduction.py
# import them from here
from nbcaffe.cuda._launch import ROW_THREADS, binary_elementwise, block_max, block_sum, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import activation as cpu
from nbcaffe.registry import register_kernel

register_kernel("Relu", CUDA)(unary_elementwise(cpu.relu))
register_kernel("ReluGradient", CUDA)(binary_elementwise(cpu.relu_grad).same)
register_kernel("LeakyRelu", CUDA)(unary_elementwise(cpu.leaky_relu, 1))
register_kernel("LeakyReluGradient", CUDA)(binary_elementwise(cpu.leaky_relu_grad, 1).same)
register_kernel("Sigmoid", CUDA)(unary_elementwise(cpu.sigmoid))
register_kernel("SigmoidGradient", CUDA)(binary_elementwise(cpu.sigmoid_grad).same)
register_kernel("Tanh", CUDA)(unary_elementwise(cpu.tanh))
register_kernel("TanhGradient", CUDA)(binary_elementwise(cpu.tanh_grad).same)
register_kernel("Elu", CUDA)(unary_elementwise(cpu.elu, 1))
register_kernel("EluGradient", CUDA)(binary_elementwise(cpu.elu_grad, 1).same)


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


@cuda.jit
def softmax_grad_kernel(y, dy, dx):
    """dx = y * (dy - sum(dy * y)) per row of (N, D) arrays: one block per row, grid-stride
    over rows.  dx may alias dy (each thread reads dy[row, j] before writing dx[row, j])."""
    shared_dot = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n = y.shape[0]
    d = y.shape[1]
    for row in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, d, ROW_THREADS):
            acc += dy[row, j] * y[row, j]
        shared_dot[tid] = acc
        cuda.syncthreads()  # all partial dot products written before the reduction reads them
        block_sum(shared_dot, tid)
        dot = shared_dot[0]
        for j in range(tid, d, ROW_THREADS):
            dx[row, j] = y[row, j] * (dy[row, j] - dot)
        cuda.syncthreads()  # every thread has read shared_dot[0] before the next row overwrites it


@register_kernel("SoftmaxGradient", CUDA)
def softmax_grad_launch(y, dy, dx):
    """Launcher with softmax_grad_cpu's signature: y, dy, dx (N, D) device arrays."""
    softmax_grad_kernel[max(1, min(y.shape[0], 4096)), ROW_THREADS](y, dy, dx)
