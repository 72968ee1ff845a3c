"""Sweep samples of the trigonometric family (inputs kept inside each function's domain)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(23)
    x = r.uniform(-1.2, 1.2, (2, 3)).astype(F32)
    unit = r.uniform(-0.9, 0.9, (2, 3)).astype(F32)
    above_one = r.uniform(1.2, 3.0, (2, 3)).astype(F32)
    big = r.uniform(-0.9, 0.9, (20, 16)).astype(F32)  # >= 256 elements: the NumPy form on the CPU
    common = [case([x]), case([big])]
    return {
        "Sin": common, "Cos": common, "Tan": common, "Atan": common, "Sinh": common, "Cosh": common,
        "Asinh": common,
        "Asin": [case([unit]), case([big])], "Acos": [case([unit]), case([big])],
        "Atanh": [case([unit]), case([big])],
        "Acosh": [case([above_one]), case([big * 0 + 2.0])],
    }
