"""The CUDA device context: allocation, ownership checks and host/device copies."""

from __future__ import annotations

import numpy as np
from numba import cuda


class CUDAContext:
    """Tensors are numba device arrays on GPU ``device_id``."""

    device_type = 1

    def __init__(self, device_id=0):
        self.device_id = device_id
        self.name = f"CUDA:{device_id}"

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return cuda.to_device(np.zeros(shape, dtype=dtype))

    @staticmethod
    def owns(value) -> bool:
        return hasattr(value, "copy_to_host") and not isinstance(value, np.ndarray)

    @staticmethod
    def to_host(value):
        return value.copy_to_host()

    @staticmethod
    def from_host(array):
        # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
        return cuda.to_device(np.require(array, requirements="C"))

    @staticmethod
    def synchronize():
        cuda.synchronize()

    @staticmethod
    def make_rng(seed=None):
        """A counter-based generator for the fill kernels (see nbcaffe/cuda/fill.py)."""
        from nbcaffe.cuda.fill import CounterRNG

        return CounterRNG(seed)
