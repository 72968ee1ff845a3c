"""CUDA kernels for nbcaffe/ops/arithmetic.py (same ops, same order)."""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import (
    THREADS,
    binary_elementwise,
    blocks_for,
    broadcast_gradient,
    copy_launch,
)
from nbcaffe.devices import CUDA
from nbcaffe.ops import arithmetic as cpu
from nbcaffe.registry import register_kernel

register_kernel("Add", CUDA)(binary_elementwise(cpu.add))
register_kernel("Sub", CUDA)(binary_elementwise(cpu.sub))
register_kernel("Mul", CUDA)(binary_elementwise(cpu.mul))
register_kernel("Div", CUDA)(binary_elementwise(cpu.div))


@cuda.jit
def sum_pair_kernel(a, b, out):
    """out[i] = a[i] + b[i] (flat, equal sizes)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a[i] + b[i]


@cuda.jit
def sum_accumulate_kernel(out, x):
    """out[i] += x[i] (flat, equal sizes)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] += x[i]


def sum_pair(a, b, out):
    sum_pair_kernel[blocks_for(out.size), THREADS](a, b, out)


def sum_accumulate(out, x):
    sum_accumulate_kernel[blocks_for(out.size), THREADS](out, x)


register_kernel("Sum", CUDA)(cpu.SumKernels(sum_pair, sum_accumulate, copy_launch))

# ---------------------------------------------------------------- gradient ops
register_kernel("AddGradient", CUDA)(broadcast_gradient(cpu.add_grad_a, cpu.add_grad_b))
register_kernel("SubGradient", CUDA)(broadcast_gradient(cpu.add_grad_a, cpu.sub_grad_b))
register_kernel("MulGradient", CUDA)(broadcast_gradient(cpu.mul_grad_a, cpu.mul_grad_b))
register_kernel("DivGradient", CUDA)(broadcast_gradient(cpu.div_grad_a, cpu.div_grad_b))
