"""Bind-time calls of the CPU forward convolution (Conv, ConvRelu, ConvSumRelu, ConvPRelu).

``bind_forward`` returns the zero-argument call an op runs on every ``RunNet``.  Most plans get
``conv_forward`` with their arrays bound; plans whose work is one small task get their views and
kernel calls built here once, because on tiny images the driver's own Python (reshapes, a
closure, the task hand-out) cost more than the arithmetic (docs/design.md, "Inference speed").
"""

from __future__ import annotations

import functools

import numpy as np

from nbcaffe.ops._conv_cpu import FWD_GEMM1X1, FWD_IM2COL, PLAN_HEAD, _canon, _gemm_blocks, conv_forward
from nbcaffe.ops._conv_kernels import add_bias_rows, im2col_nchw


def bind_forward(x, w, b, y, plan, scratch, relu=False, res=None):
    """A zero-argument callable computing conv_forward(x, w, b, y, plan, scratch, relu, res).

    A 1x1 NCHW convolution whose images are one task (small images, MTCNN's and SqueezeNet's
    heads) gets its views built here, once: the call is then one GEMM and one bias pass (the
    general driver's reshapes, closure and task hand-out cost more than the work on a 1x1 image).
    """
    nchw, group, has_bias, strategy, chunk, workers = plan[:PLAN_HEAD]
    n, m = x.shape[0], w.shape[0]
    if strategy == FWD_GEMM1X1 and nchw and n and y.size and chunk >= n and \
            not _gemm_blocks(n, chunk, m, x[0, 0].size, m * x.shape[1] // group * x[0, 0].size, group)[0]:
        P = x[0, 0].size
        x4 = x.reshape(n, group, x.shape[1] // group, P)
        y4 = y.reshape(n, group, m // group, P)
        wg = w.reshape(group, m // group, w.shape[1])
        y3 = y.reshape(n, m, P)
        has_res = res is not None
        r3 = res.reshape(n, m, P) if has_res else y3
        if not (has_bias or relu or has_res):
            return functools.partial(np.matmul, wg, x4, out=y4)

        def call():
            np.matmul(wg, x4, out=y4)
            add_bias_rows(y3, 0, n, b, has_bias, r3, has_res, relu, 0, m, 0, P)

        return call
    if strategy == FWD_IM2COL and nchw and n == 1 and chunk >= 1 and y.size:
        P = y[0, 0].size
        kg = w[0].size
        if not _gemm_blocks(1, chunk, m, P, m * kg * P, group)[0]:
            # one small image (MTCNN's heads): im2col, one GEMM, one bias pass, nothing rebuilt
            p = _canon(plan)
            col = scratch[0][0, :group * kg * P].reshape(group, kg, P)
            wg = w.reshape(group, m // group, kg)
            y3 = y.reshape(1, m, P)
            out = y3[0].reshape(group, m // group, P)
            has_res = res is not None
            r3 = res.reshape(1, m, P) if has_res else y3
            epilogue = has_bias or relu or has_res

            def one_image():
                im2col_nchw(x, 0, col, p, group)
                np.matmul(wg, col, out=out)
                if epilogue:
                    add_bias_rows(y3, 0, 1, b, has_bias, r3, has_res, relu, 0, m, 0, P)

            return one_image
    return functools.partial(conv_forward, x, w, b, y, plan, scratch, relu, res)
