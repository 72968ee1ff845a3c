"""CUDA "kernels" for nbcaffe/ops/persistence.py: the same host-side functions, registered for
CUDA.  Save copies device tensors to the host before serializing them; Load uploads the tensors
it reads onto the op's GPU (or, with keep_device=1, the GPU recorded at save time); CreateDB
and DBExists produce host objects / a bool tensor on the op's device."""

from __future__ import annotations

from nbcaffe.devices import CUDA
from nbcaffe.ops import persistence as cpu
from nbcaffe.registry import register_kernel

register_kernel("Save", CUDA)(cpu.save_run)
register_kernel("Checkpoint", CUDA)(cpu.checkpoint_run)  # also registers the Snapshot alias
register_kernel("Load", CUDA)(cpu.load_run)
register_kernel("CreateDB", CUDA)(cpu.create_db_run)
register_kernel("DBExists", CUDA)(cpu.db_exists_run)
