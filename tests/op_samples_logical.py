"""Sweep samples of the logical family (And, Or, Xor, Not, Where)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(22)
    p = r.random((2, 3)) < 0.5
    q = r.random((2, 3)) < 0.5
    col = r.random((2, 1)) < 0.5
    logic = [case([p, q]), case([p, col]), case([p, q], inplace={0: 0})]
    x = r.standard_normal((2, 3)).astype(F32)
    y = r.standard_normal((2, 3)).astype(F32)
    return {
        "And": logic, "Or": logic, "Xor": logic,
        "Not": [case([p]), case([p], inplace={0: 0})],
        "Where": [case([p, x, y]),
                  case([col, x, r.standard_normal((3,)).astype(F32)]),
                  case([r.random((4, 1, 3)) < 0.5, r.standard_normal((2, 1)).astype(F32), np.array(0.5, F32)]),
                  case([p, r.integers(0, 9, (2, 3)), r.integers(0, 9, (1, 3))])],
    }


GRADIENT_OPTIONS = {"Where": {"wrt": [1, 2], "skip_cases": [3]}}  # C is bool; case 3 has int data
