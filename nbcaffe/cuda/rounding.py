"""CUDA kernels for nbcaffe/ops/rounding.py (same ops, same order)."""

from __future__ import annotations

from nbcaffe.cuda._launch import unary_elementwise
from nbcaffe.devices import CUDA
from nbcaffe.ops import rounding as cpu
from nbcaffe.registry import register_kernel

register_kernel("Floor", CUDA)(unary_elementwise(cpu.floor))
register_kernel("Ceil", CUDA)(unary_elementwise(cpu.ceil))
register_kernel("Round", CUDA)(unary_elementwise(cpu.round_half_even))
register_kernel("Sign", CUDA)(unary_elementwise(cpu.sign))
