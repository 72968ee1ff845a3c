"""Sweep samples of the strided_slice family."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    x = np.random.default_rng(27).standard_normal((3, 4, 5)).astype(F32)
    return {
        "StridedSlice": [case([x], starts=[1], ends=[3]),
                         case([x], starts=[0, -1], ends=[4, -100], axes=[2, 1], steps=[2, -1]),
                         case([x], starts=[2], ends=[2], axes=[0]),
                         case([x], starts=[-2, 10], ends=[100, 0], axes=[-1, 0], steps=[1, -3])],
    }
