"""Sweep samples of the triangular family (Trilu)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(30)
    x = r.standard_normal((2, 3, 4)).astype(F32)
    return {
        "Trilu": [case([x]), case([x], upper=0, k=-1), case([x], k=2, inplace={0: 0}),
                  case([r.integers(0, 9, (4, 3))], upper=0, k=5), case([np.zeros((0, 3, 3), F32)])],
    }


GRADIENT_OPTIONS = {"Trilu": {"skip_cases": [2, 3, 4]}}  # in place; int data; empty
