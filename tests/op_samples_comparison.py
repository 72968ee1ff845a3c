"""Sweep samples of the comparison family (EQ, NE, LT, LE, GT, GE, IsNaN, IsInf)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(21)
    a = r.integers(-2, 3, (2, 3)).astype(F32)
    b = r.integers(-2, 3, (2, 3)).astype(F32)
    ai = r.integers(-2, 3, (3, 4)).astype(np.int64)
    row = r.integers(-2, 3, (4,)).astype(np.int64)
    compare = [case([a, b]), case([ai, row]), case([a[:, :1], b[:1]]),
               case([r.standard_normal((2, 3, 4)).astype(F32), np.zeros(3, F32)], broadcast=1, axis=1)]
    special = np.array([[0.0, np.nan, np.inf], [-np.inf, -1.5, 2.0]], F32)
    return {
        "EQ": compare, "NE": compare, "LT": compare, "LE": compare, "GT": compare, "GE": compare,
        "IsNaN": [case([special])],
        "IsInf": [case([special]), case([special], detect_negative=0), case([special], detect_positive=0)],
    }
