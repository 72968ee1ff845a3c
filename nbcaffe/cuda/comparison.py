"""CUDA kernels for nbcaffe/ops/comparison.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import binary_elementwise, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import comparison as cpu
from nbcaffe.registry import register_kernel

register_kernel("EQ", CUDA)(binary_elementwise(cpu.eq))
register_kernel("NE", CUDA)(binary_elementwise(cpu.ne))
register_kernel("LT", CUDA)(binary_elementwise(cpu.lt))
register_kernel("LE", CUDA)(binary_elementwise(cpu.le))
register_kernel("GT", CUDA)(binary_elementwise(cpu.gt))
register_kernel("GE", CUDA)(binary_elementwise(cpu.ge))
register_kernel("IsNaN", CUDA)(unary_elementwise(cpu.is_nan))
register_kernel("IsInf", CUDA)(unary_elementwise(cpu.is_inf, 2))
