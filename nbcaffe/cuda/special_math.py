"""CUDA kernels for nbcaffe/ops/special_math.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import binary_elementwise, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import special_math as cpu
from nbcaffe.registry import register_kernel

register_kernel("Reciprocal", CUDA)(unary_elementwise(cpu.reciprocal))
register_kernel("ReciprocalGradient", CUDA)(binary_elementwise(cpu.reciprocal_grad).same)
register_kernel("Erf", CUDA)(unary_elementwise(cpu.erf))
register_kernel("ErfGradient", CUDA)(binary_elementwise(cpu.erf_grad).same)
