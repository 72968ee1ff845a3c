"""CUDA kernels for nbcaffe/ops/trigonometric.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import binary_elementwise, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import trigonometric as cpu
from nbcaffe.registry import register_kernel

register_kernel("Sin", CUDA)(unary_elementwise(cpu.sin))
register_kernel("SinGradient", CUDA)(binary_elementwise(cpu.sin_grad).same)
register_kernel("Cos", CUDA)(unary_elementwise(cpu.cos))
register_kernel("CosGradient", CUDA)(binary_elementwise(cpu.cos_grad).same)
register_kernel("Tan", CUDA)(unary_elementwise(cpu.tan))
register_kernel("TanGradient", CUDA)(binary_elementwise(cpu.tan_grad).same)
register_kernel("Asin", CUDA)(unary_elementwise(cpu.asin))
register_kernel("AsinGradient", CUDA)(binary_elementwise(cpu.asin_grad).same)
register_kernel("Acos", CUDA)(unary_elementwise(cpu.acos))
register_kernel("AcosGradient", CUDA)(binary_elementwise(cpu.acos_grad).same)
register_kernel("Atan", CUDA)(unary_elementwise(cpu.atan))
register_kernel("AtanGradient", CUDA)(binary_elementwise(cpu.atan_grad).same)
register_kernel("Sinh", CUDA)(unary_elementwise(cpu.sinh))
register_kernel("SinhGradient", CUDA)(binary_elementwise(cpu.sinh_grad).same)
register_kernel("Cosh", CUDA)(unary_elementwise(cpu.cosh))
register_kernel("CoshGradient", CUDA)(binary_elementwise(cpu.cosh_grad).same)
register_kernel("Asinh", CUDA)(unary_elementwise(cpu.asinh))
register_kernel("AsinhGradient", CUDA)(binary_elementwise(cpu.asinh_grad).same)
register_kernel("Acosh", CUDA)(unary_elementwise(cpu.acosh))
register_kernel("AcoshGradient", CUDA)(binary_elementwise(cpu.acosh_grad).same)
register_kernel("Atanh", CUDA)(unary_elementwise(cpu.atanh))
register_kernel("AtanhGradient", CUDA)(binary_elementwise(cpu.atanh_grad).same)
