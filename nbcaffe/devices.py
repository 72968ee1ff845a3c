"""Device types, DeviceOption helpers and device descriptions.

Caffe2 keeps the device in ``DeviceOption.device_type`` (a plain int32: 0 = CPU, 1 = CUDA)
and the GPU ordinal in field 2 (``cuda_gpu_id`` in 2018, ``device_id`` later).  This module
never imports ``numba.cuda``: CUDA support is loaded on demand by :mod:`nbcaffe.dispatch`.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.proto import caffe2_pb2

CPU = caffe2_pb2.CPU
CUDA = caffe2_pb2.CUDA
DEVICE_NAMES = {CPU: "CPU", CUDA: "CUDA"}


def DeviceOption(device_type=CPU, device_id=None, random_seed=None, node_name=None,
                 numa_node_id=None, extra_info=None, cuda_gpu_id=None):
    """Build a ``caffe2_pb2.DeviceOption``.

    Args:
        device_type: ``CPU`` (0) or ``CUDA`` (1).
        device_id: GPU ordinal (``cuda_gpu_id`` is accepted as the Caffe2-2018 spelling).
        random_seed: seed for the random fill ops that run under this option.

    Example:
        >>> DeviceOption(CUDA, 0).device_type
        1
    """
    if device_id is not None and cuda_gpu_id is not None and device_id != cuda_gpu_id:
        raise ValueError(f"device_id={device_id} and cuda_gpu_id={cuda_gpu_id} disagree")
    option = caffe2_pb2.DeviceOption()
    option.device_type = int(device_type)
    gpu = device_id if device_id is not None else cuda_gpu_id
    option.device_id = int(gpu or 0)  # Caffe2 always set the id, even 0
    if random_seed is not None:
        option.random_seed = int(random_seed)
    if node_name is not None:
        option.node_name = node_name
    if numa_node_id is not None:
        option.numa_node_id = int(numa_node_id)
    if extra_info:
        option.extra_info.extend(extra_info)
    return option


def describe(device_option) -> str:
    """'CPU' or 'CUDA:<id>' for a DeviceOption (None means CPU)."""
    if device_option is None:
        return "CPU"
    kind = DEVICE_NAMES.get(device_option.device_type, f"device_type {device_option.device_type}")
    if device_option.device_type == CUDA:
        return f"{kind}:{device_option.device_id}"
    return kind


def describe_value(value) -> str:
    """Where a blob's value lives: 'CPU', 'CUDA' or the Python type for non-tensors."""
    if isinstance(value, np.ndarray):
        return "CPU"
    if is_device_array(value):
        return "CUDA"
    return type(value).__name__


def is_device_array(value) -> bool:
    """True for numba CUDA device arrays (real or simulated), without importing numba.cuda."""
    return hasattr(value, "copy_to_host") and hasattr(value, "shape") and not isinstance(value, np.ndarray)


def same_device(a, b) -> bool:
    """Whether two DeviceOptions name the same device (type and, for CUDA, ordinal)."""
    a_type = a.device_type if a is not None else CPU
    b_type = b.device_type if b is not None else CPU
    if a_type != b_type:
        return False
    return a_type != CUDA or a.device_id == b.device_id
