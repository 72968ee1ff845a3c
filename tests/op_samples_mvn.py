"""Sweep samples of the mvn family (Caffe's MVN layer)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(11)

    def normal(*shape, loc=0.0, scale=1.0):
        return (r.standard_normal(shape) * scale + loc).astype(F32)

    x4 = normal(2, 3, 2, 3, loc=0.7, scale=1.5)
    constant = np.full((1, 2, 2, 2), 0.25, F32)  # zero variance: Y = 0, second gradient term 0
    return {
        "MVN": [
            case([x4]),                                                    # 0 per (n, c), eps 1e-9
            case([x4], across_channels=1, eps=0.1),                        # 1 per n, Caffe eps
            case([x4], normalize_variance=0),                              # 2 mean only
            case([normal(3, 4, 5)], inplace={0: 0}, eps=1e-3),             # 3 in place, 3-D
            case([constant], eps=1e-2),                                    # 4 constant rows
            case([normal(4, 5)], across_channels=1, normalize_variance=0),  # 5 2-D across
        ],
    }


GRADIENT_OPTIONS = {
    "MVN": {"skip_cases": [3, 4]},  # 3: in place (X overwritten); 4: std = 0 is a kink of sqrt
}
