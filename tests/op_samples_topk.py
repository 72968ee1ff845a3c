"""Sweep samples of the topk family (TopK; ties keep index order)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(32)
    x = r.standard_normal((2, 3, 5)).astype(F32)
    ties = np.array([[3, 1, 3, 2, 1, 3]], np.int64)
    return {
        "TopK": [case([x], outputs=2, k=2), case([x], outputs=2, k=3, axis=1, largest=0),
                 case([ties], outputs=2, k=4), case([ties], outputs=2, k=6, largest=0),
                 case([x], outputs=2, k=0)],
    }


GRADIENT_OPTIONS = {"TopK": {"outputs": [0], "wrt": [0], "skip_cases": [2, 3, 4]}}
