"""Sweep samples of the cumulative family (CumSum)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    x = np.random.default_rng(31).standard_normal((2, 3, 4)).astype(F32)
    return {
        "CumSum": [case([x]), case([x], axis=1, exclusive=1), case([x], axis=-1, reverse=1),
                   case([x], axis=2, exclusive=1, reverse=1), case([np.arange(6, dtype=np.int32)], inplace={0: 0})],
    }


GRADIENT_OPTIONS = {"CumSum": {"skip_cases": [4]}}  # int data, in place
