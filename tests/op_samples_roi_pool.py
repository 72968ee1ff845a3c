"""Sweep samples of the roi_pool family (RoIPool; RoIPoolGradient through its forward op)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(5)
    x = r.standard_normal((2, 3, 6, 7)).astype(F32)
    rois = np.array([[0, 0, 0, 6, 5],        # the whole image
                     [1, 1.4, 2.5, 4.6, 5.2],  # fractional corners (rounded half away from zero)
                     [1, -3, -2, 2, 1],       # partly outside: clipped
                     [0, 5, 4, 3, 2]],        # x2 < x1: forced to one cell
                    F32)
    return {
        "RoIPool": [
            case([x, rois], outputs=2, pooled_h=2, pooled_w=3),                      # 0 train mode
            case([x, rois], outputs=2, pooled_h=3, pooled_w=2, spatial_scale=0.5),   # 1 scaled, empty bins
            case([x, rois[:2]], outputs=1, is_test=1, pooled_h=2, pooled_w=2),       # 2 test mode
        ],
    }


GRADIENT_OPTIONS = {
    "RoIPool": {"wrt": [0], "outputs": [0], "skip_cases": [2]},  # 2: is_test has no argmaxes
}
