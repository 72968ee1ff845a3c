"""Sweep samples of the resize family (modes, coordinate transformations, antialias, crop)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(29)
    x = r.standard_normal((1, 2, 4, 5)).astype(F32)
    return {
        "Resize": [case([x], scales=[1.0, 1.0, 2.0, 1.5], mode="linear"),
                   case([x], sizes=[1, 2, 3, 3], mode="cubic", antialias=1),
                   case([x], scales=[1.0, 1.0, 0.5, 0.6], mode="nearest", coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor"),
                   case([x], sizes=[1, 2, 6, 7], mode="cubic", coordinate_transformation_mode="align_corners",
                        exclude_outside=1),
                   case([x], sizes=[1, 2, 3, 3], mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                        roi=[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 0.7], extrapolation_value=10.0),
                   case([r.integers(0, 255, (2, 3, 3)).astype(np.uint8)], scales=[1.0, 2.0, 2.0], mode="linear")],
    }


GRADIENT_OPTIONS = {"Resize": {"skip_cases": [5]}}  # uint8 data
