"""CUDA kernels for nbcaffe/ops/reduction.py."""

from __future__ import annotations

import numba
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda.activation import block_sum
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


@cuda.jit
def sum_elements_kernel(x, squared, average, out):
    """out[0] = Σ x (or Σ x²), divided by x.size when average; one block."""
    shared = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, x.size, ROW_THREADS):
        acc += x[i] * x[i] if squared else x[i]
    shared[tid] = acc
    cuda.syncthreads()  # partial sums visible before reducing
    block_sum(shared, tid)
    if tid == 0:
        out[0] = shared[0] / x.size if average and x.size else shared[0]


@register_kernel("SumElements", CUDA)
def sum_elements_launch(x, average, out):
    sum_elements_kernel[1, ROW_THREADS](x, False, average, out)


@register_kernel("SumSqrElements", CUDA)
def sum_sqr_elements_launch(x, average, out):
    sum_elements_kernel[1, ROW_THREADS](x, True, average, out)


@cuda.jit
def sum_elements_grad_kernel(x, dy, scale_by_x, average, dx):
    """dx = dy[0] (* 2x) (/ N)."""
    g = dy[0] / x.size if average and x.size else dy[0]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        dx[i] = 2.0 * x[i] * g if scale_by_x else g


def sum_elements_grad_launch(x, dy, scale_by_x, average, dx):
    sum_elements_grad_kernel[blocks_for(x.size), THREADS](x, dy, scale_by_x, average, dx)


register_kernel("SumElementsGradient", CUDA)(sum_elements_grad_launch)
register_kernel("SumSqrElementsGradient", CUDA)(sum_elements_grad_launch)


@cuda.jit
def copy_kernel(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[i]


@cuda.jit
def extreme_step_kernel(x, take_max, out):
    """out[i] = max(out[i], x[i]) (or min)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if (x[i] > out[i]) if take_max else (x[i] < out[i]):
            out[i] = x[i]


def extreme_launch(xs, take_max, out):
    """Launcher with extreme_cpu's signature: xs a tuple of flat device arrays."""
    blocks = blocks_for(out.size)
    copy_kernel[blocks, THREADS](xs[0], out)
    for x in xs[1:]:
        extreme_step_kernel[blocks, THREADS](x, take_max, out)


register_kernel("Max", CUDA)(extreme_launch)
register_kernel("Min", CUDA)(extreme_launch)


@cuda.jit
def extreme_grad_kernel(y, dy, x, dx):
    """dx = dy where x == y else 0."""
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] if x[i] == y[i] else 0.0


def extreme_grad_launch(y, dy, x, dx):
    extreme_grad_kernel[blocks_for(y.size), THREADS](y, dy, x, dx)


register_kernel("MaxGradient", CUDA)(extreme_grad_launch)
register_kernel("MinGradient", CUDA)(extreme_grad_launch)
