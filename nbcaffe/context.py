"""Device contexts: how an operator allocates, recognises and moves tensors on its device.

The CPU context lives here; the CUDA context lives in :mod:`nbcaffe.cuda.context` and is
reached only through :func:`nbcaffe.dispatch.context_for`, so ``import nbcaffe`` never
imports ``numba.cuda``.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.devices import CPU


class CPUContext:
    """Tensors are C-contiguous NumPy arrays in host memory."""

    device_type = CPU
    device_id = 0
    name = "CPU"

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    @staticmethod
    def zeros(shape, dtype):
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def owns(value) -> bool:
        return isinstance(value, np.ndarray)

    @staticmethod
    def to_host(value):
        """A host copy of a tensor of this device."""
        return np.array(value, copy=True)

    @staticmethod
    def from_host(array):
        """A tensor of this device holding a copy of host array ``array``."""
        return np.array(array, copy=True, order="C")

    @staticmethod
    def synchronize():
        pass

    @staticmethod
    def make_rng(seed=None):
        """The random generator random fills draw from (PCG64; fresh entropy when seed is None)."""
        return np.random.Generator(np.random.PCG64(seed))


CPU_CONTEXT = CPUContext()
