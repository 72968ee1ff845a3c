"""Sweep samples of the rounding family (Floor, Ceil, Round, Sign)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    values = np.array([[-2.5, -1.5, -0.5, 0.0, 0.5, 1.5], [2.5, 3.7, -3.2, np.nan, np.inf, -np.inf],
                       [1e30, -1e30, 4.5, 5.5, -0.0, 0.49999997]], F32)
    doubles = values.astype(np.float64)
    cases = [case([values]), case([doubles]), case([values], inplace={0: 0})]
    return {
        "Floor": cases, "Ceil": cases, "Round": cases,
        "Sign": cases + [case([np.array([[-3, 0, 4]], np.int32)])],
    }
