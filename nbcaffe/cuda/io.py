"""CUDA "kernels" for nbcaffe/ops/io.py: TensorProtosDBInput and ImageInput read and decode
their batch on the host (as Caffe2's prefetching input ops did on the CPU side) and upload it
into the op's output buffers on its GPU."""

from __future__ import annotations

import numpy as np

from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel


def upload_outputs(arrays, outputs):
    """Copy each host array of the batch into its device output buffer (same shape)."""
    for array, out in zip(arrays, outputs):
        out.copy_to_device(np.ascontiguousarray(array))


register_kernel("TensorProtosDBInput", CUDA)(upload_outputs)
register_kernel("ImageInput", CUDA)(upload_outputs)
