"""CUDA kernels for nbcaffe/ops/layout.py (same ops, same order).

Every permutation is a strided copy: the shared grid-stride copy of nbcaffe/cuda/_array_util.py.
"""

from __future__ import annotations

from nbcaffe.cuda._array_util import LAYOUT
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

for _name in ("Transpose", "NCHW2NHWC", "NHWC2NCHW", "ChannelShuffle", "ChannelShuffleGradient"):
    register_kernel(_name, CUDA)(LAYOUT)
del _name
