"""Sweep samples of the collective ops (nbcaffe/ops/collective.py) on a one-process world.

In a world of one process the collectives are local: Allreduce sums its tensor inputs,
Broadcast copies the first, Allgather flattens and concatenates.  The multi-process behaviour is
tested under mpiexec in tests/test_data_parallel_mpi.py.
"""

from __future__ import annotations

import numpy as np

from nbcaffe.distributed import LocalWorld
from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(17)
    a = r.standard_normal((2, 3)).astype(F32)
    b = r.standard_normal((2, 3)).astype(F32)
    w = LocalWorld()
    return {
        "CreateCommonWorld": [case([]), case([], size=1, rank=0, timeout_ms=5000)],
        "CloneCommonWorld": [case([w])],
        "DestroyCommonWorld": [case([LocalWorld()], inplace={0: 0})],
        "Allreduce": [case([w, a], inplace={0: 1}), case([w, a, b], outputs=2, inplace={0: 1, 1: 2})],
        "Broadcast": [case([w, a], inplace={0: 1}), case([w, a, b], outputs=2, inplace={0: 1, 1: 2}, root=0)],
        "Allgather": [case([w, a]), case([w, a, b])],
        "Barrier": [case([w], outputs=0)],
    }


# the world (input 0) is a host object, whatever device the op runs on
HOST_INPUTS = {"CloneCommonWorld": {0}, "DestroyCommonWorld": {0}, "Allreduce": {0}, "Broadcast": {0},
               "Allgather": {0}, "Barrier": {0}}
