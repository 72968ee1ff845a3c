"""The CUDA device context: allocation, ownership checks and host/device copies."""

from __future__ import annotations

import numpy as np
from numba import cuda


class CUDAContext:
    """Tensors are numba device arrays on GPU ``device_id``.

    With more than one GPU in the machine, allocations, uploads and kernel launches of this
    context run with its device made current (``cuda.gpus[device_id]``), so replicas under
    ``DeviceOption(CUDA, 1)`` live and run on GPU 1.  With one GPU (and under the simulator,
    which has one) nothing is switched: that keeps the per-op launch path free of the
    context push.  The multi-GPU path has not run on real hardware yet (no multi-GPU
    machine was available); the single-GPU path is what the tests and the simulator cover.
    """

    device_type = 1

    def __init__(self, device_id=0):
        self.device_id = device_id
        self.name = f"CUDA:{device_id}"
        self._select = len(cuda.gpus) > 1

    def _device(self):
        return cuda.gpus[self.device_id]

    def empty(self, shape, dtype):
        if not self._select:
            return cuda.device_array(shape, dtype=dtype)
        with self._device():
            return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.from_host(np.zeros(shape, dtype=dtype))

    def wrap_call(self, call):
        """The bound kernel call, run with this context's GPU current (multi-GPU only)."""
        if not self._select:
            return call
        device = self._device()

        def on_device():
            with device:
                return call()

        return on_device

    @staticmethod
    def owns(value) -> bool:
        return hasattr(value, "copy_to_host") and not isinstance(value, np.ndarray)

    @staticmethod
    def to_host(value):
        return value.copy_to_host()

    def from_host(self, array):
        # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
        host = np.require(array, requirements="C")
        if not self._select:
            return cuda.to_device(host)
        with self._device():
            return cuda.to_device(host)

    @staticmethod
    def synchronize():
        cuda.synchronize()

    @staticmethod
    def make_rng(seed=None):
        """A counter-based generator for the fill kernels (see nbcaffe/cuda/fill.py)."""
        from nbcaffe.cuda.fill import CounterRNG

        return CounterRNG(seed)
