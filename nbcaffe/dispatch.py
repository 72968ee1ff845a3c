"""Choose a kernel for an operator: its device type, then its engines, then the default.

Runs once per operator when a net is instantiated (never per run).  The first CUDA
DeviceOption seen imports :mod:`nbcaffe.cuda`, which registers the CUDA kernels; that is
the only way ``numba.cuda`` gets imported, so CPU-only machines never pay for it and
``NUMBA_ENABLE_CUDASIM`` (read when numba.cuda is first imported) keeps working.
"""

from __future__ import annotations

import importlib

from nbcaffe import errors, registry
from nbcaffe.context import CPU_CONTEXT
from nbcaffe.devices import CPU, CUDA, DEVICE_NAMES

_cuda_module = None
_cuda_error = None


def load_cuda():
    """Import nbcaffe.cuda once; raise UnsupportedOperatorError (with the reason) if no GPU."""
    global _cuda_module, _cuda_error
    if _cuda_module is not None:
        return _cuda_module
    if _cuda_error is not None:
        raise errors.UnsupportedOperatorError(_cuda_error)
    try:
        module = importlib.import_module("nbcaffe.cuda")
        module.check_available()
    except errors.NbcaffeError as exc:
        _cuda_error = str(exc)
        raise
    except Exception as exc:  # numba-cuda missing or broken: say so once, clearly
        _cuda_error = f"CUDA support is unavailable: {type(exc).__name__}: {exc}"
        raise errors.UnsupportedOperatorError(_cuda_error) from exc
    _cuda_module = module
    return module


def cuda_available() -> bool:
    """True when CUDA kernels can run (a GPU, or NUMBA_ENABLE_CUDASIM=1)."""
    try:
        load_cuda()
    except errors.NbcaffeError:
        return False
    return True


def context_for(device_option):
    """The device context (allocation, ownership, copies) for a DeviceOption."""
    device_type = device_option.device_type if device_option is not None else CPU
    if device_type == CPU:
        return CPU_CONTEXT
    if device_type == CUDA:
        return load_cuda().context(device_option.device_id)
    raise errors.UnsupportedOperatorError(
        f"device_type {device_type} is not supported; nbcaffe runs on CPU (0) and CUDA (1)")


def find_kernel(op_type: str, device_type: int, engine_field: str = ""):
    """Return ``(kernel, engine)`` for an op.

    ``engine_field`` is the OperatorDef's comma-separated engine preference list; engines
    without a kernel are skipped and the default engine is used, as in Caffe2.
    """
    schema = registry.get_schema(op_type)
    if device_type == CUDA:
        load_cuda()
    wanted = [e.strip() for e in (engine_field or "").split(",") if e.strip()]
    for engine in wanted + [""]:
        kernel = registry.KERNELS.get((op_type, device_type, engine))
        if kernel is not None:
            return kernel, engine
    where = DEVICE_NAMES.get(device_type, f"device_type {device_type}")
    has = registry.devices_with(op_type)
    raise errors.UnsupportedOperatorError(
        f"Operator '{op_type}' has no kernel for {where}"
        + (f"; it has kernels for: {', '.join(has)}" if has else "")
        + ("" if schema.alias_of == "" else f" (alias of {schema.alias_of})") + ".")
