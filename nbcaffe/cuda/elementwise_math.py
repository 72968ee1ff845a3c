"""CUDA kernels for nbcaffe/ops/elementwise_math.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import binary_elementwise, broadcast_gradient, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import elementwise_math as cpu
from nbcaffe.registry import register_kernel

register_kernel("Scale", CUDA)(unary_elementwise(cpu.scale, 1))
register_kernel("Exp", CUDA)(unary_elementwise(cpu.exp))
register_kernel("Log", CUDA)(unary_elementwise(cpu.log))
register_kernel("Sqrt", CUDA)(unary_elementwise(cpu.sqrt))
register_kernel("Abs", CUDA)(unary_elementwise(cpu.absolute))
register_kernel("Negative", CUDA)(unary_elementwise(cpu.negative))
register_kernel("Sqr", CUDA)(unary_elementwise(cpu.sqr))
register_kernel("Clip", CUDA)(unary_elementwise(cpu.clip, 2))
register_kernel("Pow", CUDA)(cpu.PowKernels(unary_elementwise(cpu.power, 1), binary_elementwise(cpu.power)))

# ---------------------------------------------------------------- gradient ops
register_kernel("PowGradient", CUDA)(
    cpu.PowGradKernels(binary_elementwise(cpu.pow_grad, 1).same, broadcast_gradient(cpu.pow_grad_x, cpu.pow_grad_e)))
register_kernel("ExpGradient", CUDA)(binary_elementwise(cpu.exp_grad).same)
register_kernel("LogGradient", CUDA)(binary_elementwise(cpu.log_grad).same)
register_kernel("SqrtGradient", CUDA)(binary_elementwise(cpu.sqrt_grad).same)
register_kernel("AbsGradient", CUDA)(binary_elementwise(cpu.abs_grad).same)
register_kernel("SqrGradient", CUDA)(binary_elementwise(cpu.sqr_grad).same)
register_kernel("ClipGradient", CUDA)(binary_elementwise(cpu.clip_grad, 2).same)
