"""CUDA kernels for nbcaffe/ops/reduce_axes.py: every axis reduction and its gradient runs the
reduction-plan launchers of nbcaffe/cuda/_reduce_util.py (reduce_cpu / reduce_grad_cpu's
arguments)."""

from __future__ import annotations

from nbcaffe.cuda._reduce_util import reduce_grad_launch, reduce_launch
from nbcaffe.devices import CUDA
from nbcaffe.registry import register_kernel

for _name in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceFrontSum", "ReduceFrontMean",
              "ReduceFrontMax", "ReduceBackSum", "ReduceBackMean", "ReduceBackMax"):
    register_kernel(_name, CUDA)(reduce_launch)
    register_kernel(_name + "Gradient", CUDA)(reduce_grad_launch)
del _name
