"""Sweep samples of the gather_elements family (repeated and negative indices included)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(33)
    data = r.standard_normal((3, 4)).astype(F32)
    return {
        "GatherElements": [case([data, np.array([[0, 0], [2, 1], [1, 1]], np.int64)], axis=1),
                           case([data, np.array([[2, 0, 1, 1], [-1, 0, 0, 2]], np.int32)]),
                           case([r.standard_normal((2, 3, 2)).astype(F32), r.integers(-2, 2, (2, 3, 2))], axis=-1)],
    }
