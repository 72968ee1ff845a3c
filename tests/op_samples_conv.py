"""Sweep samples for the convolution family (tests/test_op_sweep.py): tiny shapes covering
NCHW/NHWC, groups, dilation, strides, asymmetric pads, 1-D/3-D, legacy padding, 1x1 and
the row-shift path (NCHW, unit strides), with and without bias."""

from __future__ import annotations

import numpy as np

from tests.op_samples import case

F32 = np.float32


def _r(seed):
    return np.random.default_rng(seed)


def _a(rng, *shape):
    return rng.standard_normal(shape).astype(F32)


def samples():
    r = _r(40)
    x = _a(r, 2, 4, 5, 6)  # NCHW
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC
    w3 = _a(r, 3, 4, 3, 3)
    wg = _a(r, 6, 2, 3, 2)  # group 2
    wgh = np.ascontiguousarray(wg.transpose(0, 2, 3, 1))
    b3, b6 = _a(r, 3), _a(r, 6)
    x1 = _a(r, 2, 3, 9)
    w1 = _a(r, 4, 3, 3)
    x3 = _a(r, 1, 2, 4, 5, 3)
    w3d = _a(r, 3, 2, 2, 3, 2)
    conv = [
        case([x, w3, b3], kernel=3, pad=1),  # row-shift path
        case([x, w3], kernel=3, stride=2, pad_t=1, pad_l=0, pad_b=2, pad_r=1),  # im2col, asymmetric pads, no bias
        # row-shift with groups and dilation
        case([x, wg, b6], kernel_h=3, kernel_w=2, group=2, dilation=2, pads=[2, 1, 2, 0]),
        case([xh, wgh, b6], kernels=[3, 2], group=2, strides=[2, 1], pad=1, order="NHWC"),
        case([xh, np.ascontiguousarray(w3.transpose(0, 2, 3, 1)), b3], kernel=3, order="NHWC", legacy_pad=2,
             stride=2),
        case([x, _a(r, 6, 2, 1, 1), b6], kernel=1, group=2),  # 1x1 GEMM
        case([xh, _a(r, 3, 1, 1, 4)], kernel=1, order="NHWC"),
        case([x, w3, b3], kernel=3, stride=2, pad=1, legacy_pad=3),
        case([x, w3], kernel=3, legacy_pad=1),
        case([x, w3], kernel=3, dilation_h=2, dilation_w=1, stride_h=1, stride_w=2),
        case([x, _a(r, 4, 1, 3, 3), _a(r, 4)], kernel=3, stride=2, pad=1, group=4),  # depthwise
    ]
    conv1d = [case([x1, w1, _a(r, 4)], kernels=[3], strides=[2], pads=[1, 0]),
              case([x1, w1], kernel=3, pad=2, dilation=2)]
    conv3d = [case([x3, w3d, b3], kernels=[2, 3, 2], pads=[1, 0, 1, 0, 1, 0]),
              case([np.ascontiguousarray(x3.transpose(0, 2, 3, 4, 1)),
                    np.ascontiguousarray(w3d.transpose(0, 2, 3, 4, 1))], kernels=[2, 3, 2], strides=[1, 2, 1],
                   order="NHWC")]
    xt = _a(r, 2, 4, 3, 4)
    wt = _a(r, 4, 3, 3, 3)  # (C_in, C_out/group, k, k)
    transpose = [
        case([xt, wt, b3], kernel=3, stride=2, pad=1, adj=1),
        case([xt, wt], kernel=3, pad=1),  # unit stride: row-shift through the flipped filter
        case([xt, _a(r, 4, 1, 2, 3), b6[:2]], kernels=[2, 3], strides=[2, 1], pads=[0, 1, 1, 0], group=2),
        case([np.ascontiguousarray(xt.transpose(0, 2, 3, 1)), np.ascontiguousarray(wt.transpose(0, 2, 3, 1)), b3],
             kernel=3, stride=2, adj_h=1, adj_w=0, pad=1, order="NHWC"),
        case([x1, _a(r, 3, 2, 4)], kernels=[4], strides=[3], adjs=[2]),
        case([xt, wt[:, :, :2, :2].copy(), b3], kernel=2, stride=2, legacy_pad=1),
    ]
    return {
        "Conv": conv,
        "Conv1D": conv1d,
        "Conv2D": [conv[0], conv[3]],
        "Conv3D": conv3d,
        # inference only, CPU only: the row-shift, im2col, 1x1, NHWC and depthwise paths
        "ConvRelu": [conv[0], conv[1], conv[3], conv[5], conv[-1]],
        "ConvPRelu": [case([x, w3, b3, _a(r, 3)], kernel=3, pad=1),  # row-shift, per-channel slope
                      case([xh, np.ascontiguousarray(w3.transpose(0, 2, 3, 1)), b3, _a(r, 1)], kernel=3,
                           order="NHWC", stride=2)],  # NHWC im2col, shared slope
        "ConvSumRelu": [case([x, w3, b3, _a(r, 2, 3, 5, 6)], kernel=3, pad=1),  # row-shift
                        case([x, _a(r, 6, 2, 1, 1), b6, _a(r, 2, 6, 5, 6)], kernel=1, group=2),  # 1x1
                        case([x, _a(r, 4, 1, 3, 3), _a(r, 4), _a(r, 2, 4, 3, 3)], kernel=3, stride=2, pad=1,
                             group=4)],  # depthwise: one more pass
        "ConvTranspose": transpose,
    }
