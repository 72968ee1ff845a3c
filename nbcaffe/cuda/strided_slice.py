"""CUDA kernels for nbcaffe/ops/strided_slice.py (same ops, same order): the shared strided
copy and fill of nbcaffe/cuda/_array_util.py."""

from __future__ import annotations

from nbcaffe.cuda._array_util import LAYOUT
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

register_kernel("StridedSlice", CUDA)(LAYOUT)
register_kernel("StridedSliceGradient", CUDA)(LAYOUT)
