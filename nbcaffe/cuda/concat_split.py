"""CUDA kernels for nbcaffe/ops/concat_split.py (same ops, same order).

Concat and Split are strided copies: the shared grid-stride copy of nbcaffe/cuda/_array_util.py.
Concat's split_info output stays on the host.
"""

from __future__ import annotations

from nbcaffe.cuda._array_util import LAYOUT
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

register_kernel("Concat", CUDA)(LAYOUT)
register_kernel("Split", CUDA)(LAYOUT)
