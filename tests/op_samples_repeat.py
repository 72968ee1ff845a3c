"""Sweep samples of the repeat family (Expand, Tile)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(26)
    x = r.standard_normal((3, 1)).astype(F32)
    return {
        "Expand": [case([x, np.array([2, 3, 4], np.int64)]),
                   case([x, np.array([1, 1], np.int64)]),
                   case([r.standard_normal((2, 1, 3)).astype(F32), np.array([2, 1], np.int64)]),
                   case([np.array(1.5, F32), np.array([2, 2], np.int64)])],
        "Tile": [case([r.standard_normal((2, 3)).astype(F32)], tiles=3, axis=1),
                 case([r.standard_normal((2, 3, 2)).astype(F32)], tiles=2, axis=0),
                 case([r.integers(0, 5, (2, 2))], tiles=2, axis=-1)],
    }


GRADIENT_OPTIONS = {"Expand": {"wrt": [0]}, "Tile": {"skip_cases": [2]}}
HOST_INPUTS = {"Expand": (1,)}
