"""CUDA side of nbcaffe/ops/python_op.py: Python functions run on the host, so on a CUDA
device option the ops copy their inputs to the host and their outputs back (the op does the
copies; the kernel slot only marks the device as supported)."""

from __future__ import annotations

from nbcaffe.devices import CUDA
from nbcaffe.ops.python_op import host_path
from nbcaffe.registry import register_kernel

register_kernel("Python", CUDA)(host_path)
register_kernel("PythonGradient", CUDA)(host_path)
