"""Sweep samples of the debugging ops (NanCheck, Assert); their failures are tested in
tests/ops/test_debug.py."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(21)
    x = r.standard_normal((2, 3)).astype(F32)
    x4 = r.standard_normal((2, 1, 2, 3)).astype(np.float64)
    return {
        "NanCheck": [case([x]), case([x4], inplace={0: 0}), case([x, r.standard_normal(4).astype(F32)])],
        "Assert": [case([np.array([1, 2, -3], np.int32)], outputs=0),
                   case([np.ones((2, 2), bool)], outputs=0),
                   case([np.array([7], np.int64)], outputs=0)],
    }


GRADIENT_OPTIONS = {"NanCheck": {"wrt": [0]}}  # extra inputs are context only: no gradient
