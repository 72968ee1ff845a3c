"""Sweep samples for nbcaffe/ops/linalg.py: MatMul, BatchMatMul, ElementwiseLinear."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(4)

    def t(*shape):
        return r.standard_normal(shape).astype(F32)

    return {
        "MatMul": [
            case([t(3, 4), t(4, 5)]),
            case([t(4, 3), t(4, 5)], trans_a=1),
            case([t(3, 4), t(5, 4)], trans_b=1),
            case([t(4, 3), t(5, 4)], trans_a=1, trans_b=1),
            case([t(2, 3, 4), t(4, 5)], axis_a=2),
            case([t(3, 4), t(2, 2, 5)], axis_b=2),
            case([t(2, 2, 3), t(5, 3)], axis_a=2, trans_b=1),
            case([t(3, 4), t(4, 2), t(2, 3)]),  # the third input gives Y its shape
        ],
        "BatchMatMul": [
            case([t(2, 3, 4), t(2, 4, 5)]),
            case([t(2, 4, 3), t(2, 4, 5)], trans_a=1),
            case([t(2, 3, 4), t(2, 5, 4)], trans_b=1),
            case([t(2, 4, 3), t(2, 5, 4)], trans_a=1, trans_b=1),
            case([t(3, 4), t(4, 2)]),
            case([t(3, 4), t(2, 4, 5)], broadcast=1),
            case([t(2, 1, 3, 4), t(3, 4, 2)], broadcast=1),
            case([t(2, 1, 4, 3), t(1, 3, 2, 4)], broadcast=1, trans_a=1, trans_b=1),
            case([t(4), t(2, 4, 3)], broadcast=1),
            case([t(2, 3, 4), t(4)], broadcast=1),
            case([t(4), t(4)], broadcast=1),
        ],
        "ElementwiseLinear": [
            case([t(3, 4), t(4), t(4)]),
            case([t(2, 3, 4), t(4), t(4)], axis=2),
            case([t(2, 3, 2), t(6), t(6)]),
            case([t(2, 3), t(6), t(6)], axis=0),
        ],
    }


GRADIENT_OPTIONS = {
    # the optional third input only lends its shape; with it (case 7) dY is not (M, N), and the
    # gradient ops (Caffe2's, viewing dY at axis 1) cannot recover the 2-D view: not checked
    "MatMul": {"wrt": [0, 1], "skip_cases": [7]},
}
