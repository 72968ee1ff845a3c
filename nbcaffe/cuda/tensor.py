"""CUDA kernels for nbcaffe/ops/tensor.py: device copies, casts and host transfers."""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for, copy_launch
from nbcaffe.devices import CUDA
from nbcaffe.ops import tensor as cpu
from nbcaffe.registry import register_kernel


@cuda.jit
def cast_to_bool_kernel(x, y):
    """y[i] = x[i] != 0."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] != 0


def cast_to_bool_launch(x, y):
    cast_to_bool_kernel[blocks_for(x.size), THREADS](x, y)


def host_to_device(x, y):
    """y (device) = x (host); flat arrays of equal size."""
    y.copy_to_device(x)


def device_to_host(x, y):
    """y (host) = x (device); flat arrays of equal size."""
    x.copy_to_host(y)


for _name in ("Reshape", "Flatten", "FlattenToVec", "ResizeLike", "Copy", "StopGradient"):
    register_kernel(_name, CUDA)(copy_launch)
register_kernel("Cast", CUDA)(cpu.CastKernels(copy_launch, cast_to_bool_launch))
# EnsureCPUOutput's output is on the host: device inputs are copied by its bind, host inputs
# by the CPU copy kernel.
register_kernel("EnsureCPUOutput", CUDA)(cpu.copy_cpu)
register_kernel("CopyFromCPUInput", CUDA)(host_to_device)
register_kernel("CopyCPUToGPU", CUDA)(host_to_device)
register_kernel("CopyGPUToCPU", CUDA)(device_to_host)
register_kernel("Print", CUDA)(cpu.format_tensor)
