"""CUDA kernels, imported lazily by :func:`nbcaffe.dispatch.load_cuda`.

Importing this package imports ``numba.cuda`` and registers every CUDA kernel (mirror
modules of nbcaffe/ops/).  All kernels are lazy ``@cuda.jit`` (no signatures), so the import
works on machines without a GPU; they run under ``NUMBA_ENABLE_CUDASIM=1`` or on a GPU.
"""

from __future__ import annotations

import importlib

from numba import cuda

from nbcaffe import errors
from nbcaffe.cuda.context import CUDAContext
from nbcaffe.ops import FAMILIES

# one mirror module per operator family of nbcaffe/ops/ (tests/test_registry.py checks the mirror)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
del _family

_contexts: dict = {}


def check_available():
    """Raise UnsupportedOperatorError when neither a GPU nor the simulator is usable."""
    if not cuda.is_available():
        raise errors.UnsupportedOperatorError(
            "CUDA is not available: no NVIDIA GPU/driver was found. Run on a machine with a GPU, or set"
            " NUMBA_ENABLE_CUDASIM=1 before Python starts to use numba's CUDA simulator.")


def simulated() -> bool:
    """True under numba's CUDA simulator."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def device_count() -> int:
    return len(cuda.gpus)


def context(device_id=0) -> CUDAContext:
    """The (cached) context of GPU ``device_id``."""
    ctx = _contexts.get(device_id)
    if ctx is None:
        if not 0 <= device_id < device_count():
            raise errors.UnsupportedOperatorError(
                f"CUDA device {device_id} does not exist; this machine has {device_count()} GPU(s)")
        ctx = _contexts[device_id] = CUDAContext(device_id)
    return ctx
