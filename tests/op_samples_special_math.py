"""Sweep samples of the special_math family (Reciprocal, Erf)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(24)
    away = (r.uniform(0.5, 2.0, (2, 3)) * r.choice([-1, 1], (2, 3))).astype(F32)
    x = r.standard_normal((2, 3)).astype(F32)
    big = r.standard_normal((20, 16)).astype(F32)
    return {
        "Reciprocal": [case([away]), case([big + 5.0])],
        "Erf": [case([x]), case([big])],
    }
