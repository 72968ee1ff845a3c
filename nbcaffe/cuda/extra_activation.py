"""CUDA kernels for nbcaffe/ops/extra_activation.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import binary_elementwise, unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import extra_activation as cpu
from nbcaffe.registry import register_kernel

register_kernel("Selu", CUDA)(unary_elementwise(cpu.selu, 2))
register_kernel("SeluGradient", CUDA)(binary_elementwise(cpu.selu_grad, 2).same)
register_kernel("HardSigmoid", CUDA)(unary_elementwise(cpu.hard_sigmoid, 2))
register_kernel("HardSigmoidGradient", CUDA)(binary_elementwise(cpu.hard_sigmoid_grad, 2).same)
register_kernel("Softsign", CUDA)(unary_elementwise(cpu.softsign))
register_kernel("SoftsignGradient", CUDA)(binary_elementwise(cpu.softsign_grad).same)
register_kernel("ThresholdedRelu", CUDA)(unary_elementwise(cpu.thresholded_relu, 1))
register_kernel("ThresholdedReluGradient", CUDA)(binary_elementwise(cpu.thresholded_relu_grad, 1).same)
register_kernel("Celu", CUDA)(unary_elementwise(cpu.celu, 1))
register_kernel("CeluGradient", CUDA)(binary_elementwise(cpu.celu_grad, 1).same)
register_kernel("HardSwish", CUDA)(unary_elementwise(cpu.hard_swish))
register_kernel("HardSwishGradient", CUDA)(binary_elementwise(cpu.hard_swish_grad).same)
register_kernel("Mish", CUDA)(unary_elementwise(cpu.mish))
register_kernel("MishGradient", CUDA)(binary_elementwise(cpu.mish_grad).same)
register_kernel("Gelu", CUDA)(unary_elementwise(cpu.gelu, 1))
register_kernel("GeluGradient", CUDA)(binary_elementwise(cpu.gelu_grad, 1).same)
register_kernel("Swish", CUDA)(unary_elementwise(cpu.swish, 1))
register_kernel("SwishGradient", CUDA)(binary_elementwise(cpu.swish_grad, 1).same)
register_kernel("Shrink", CUDA)(unary_elementwise(cpu.shrink, 2))
register_kernel("ShrinkGradient", CUDA)(binary_elementwise(cpu.shrink_grad, 2).same)
