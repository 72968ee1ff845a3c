"""Sweep samples of the normalization family (SpatialBN, InstanceNorm, LayerNorm, LRN)."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def samples():
    r = np.random.default_rng(7)

    def normal(*shape, loc=0.0, scale=1.0):
        return (r.standard_normal(shape) * scale + loc).astype(F32)

    def positive(*shape):
        return (r.random(shape) + 0.5).astype(F32)

    x_nchw = normal(2, 3, 2, 2, loc=0.5, scale=2.0)
    x_nhwc = normal(2, 2, 2, 3, loc=-1.0)
    x_3d = normal(3, 2, 4)
    c3 = (normal(3), normal(3), normal(3) * 0.1, positive(3))  # scale, bias, mean, var
    c2 = (normal(2), normal(2), normal(2) * 0.1, positive(2))
    return {
        "SpatialBN": [
            case([x_nchw, *c3], outputs=5, inplace={1: 3, 2: 4}),                              # 0 training NCHW
            case([x_nhwc, *c3], outputs=5, inplace={1: 3, 2: 4}, order="NHWC", momentum=0.7),  # 1 training NHWC
            case([x_nchw, *c3], outputs=1, is_test=1),                                         # 2 inference NCHW
            case([x_nhwc, *c3], outputs=1, is_test=1, order="NHWC", epsilon=1e-3),             # 3 inference NHWC
            case([x_3d, *c2], outputs=5, inplace={0: 0, 1: 3, 2: 4}),                          # 4 Y in place of X
            case([normal(4, 3), *c3], outputs=5, inplace={1: 3, 2: 4}),                        # 5 2-D (N, C)
        ],
        "InstanceNorm": [
            case([x_nchw, c3[0], c3[1]], outputs=3),
            case([x_nhwc, c3[0], c3[1]], outputs=3, order="NHWC", epsilon=1e-3),
            case([x_nchw, c3[0], c3[1]], outputs=1),
            case([x_nhwc, c3[0], c3[1]], outputs=1, inplace={0: 0}, order="NHWC"),
            case([x_3d, c2[0], c2[1]], outputs=2),
        ],
        "LayerNorm": [
            case([normal(3, 4, loc=2.0)], outputs=3),
            case([x_nchw], outputs=3, axis=2),
            case([x_nchw], outputs=3, axis=-1, epsilon=1e-3),
            case([x_nchw, normal(3, 2, 2), normal(3, 2, 2)], outputs=3, elementwise_affine=1),
            case([x_3d, normal(4), normal(4)], outputs=3, axis=2, elementwise_affine=1),
        ],
        "LRN": [
            case([x_nchw], outputs=2, size=3, alpha=0.3, beta=0.75, bias=1.5),
            case([x_nhwc], outputs=2, size=3, alpha=0.2, beta=0.6, bias=2.0, order="NHWC"),
            case([normal(2, 5, 2, 1)], outputs=1, size=5, alpha=0.5, beta=0.5),
            case([normal(2, 4, 3)], outputs=1, size=2, alpha=0.4, beta=1.3, bias=1.0),  # even size
        ],
    }


# Gradients flow through Y only (Caffe2's makers read GO(0) alone); the running/saved
# statistics of SpatialBN (inputs 3, 4) get no gradient.
GRADIENT_OPTIONS = {
    "SpatialBN": {"outputs": [0], "wrt": [0, 1, 2],
                  "skip_cases": [4]},  # Y in place of X: the gradient op needs the overwritten X
    "InstanceNorm": {"outputs": [0], "wrt": [0, 1, 2], "skip_cases": [3]},  # in place: X overwritten
    "LayerNorm": {"outputs": [0]},
    "LRN": {"outputs": [0]},
}
