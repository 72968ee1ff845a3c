"""CUDA kernels for nbcaffe/ops/conv.py (and conv_transpose.py, whose launchers are in
nbcaffe/cuda/conv_transpose.py): direct convolution kernels (no im2col, no atomics).

Each kernel owns one output element and loops over what it reads, so results are
deterministic and every kernel is a plain grid-stride loop (cheap under the simulator):

* forward: one thread per Y element, summing C/G x kernel taps;
* input gradient: one thread per X element, gathering the (output, tap) pairs that read it;
* filter gradient: one thread per filter element, summing over images and output positions;
* bias gradient: one thread per channel.

ConvTranspose runs the same kernels with the roles of the convolution's input and output
swapped (its forward pass is the input-gradient kernel).  Arrays are the 5-D views the ops
bind ((N, C, D, H, W) for NCHW, (N, D, H, W, C) for NHWC) and ``p`` the 18 canonical window
ints of the plan.  An im2col + tiled-GEMM path (nbcaffe/cuda/fc.py's GEMM) would be the next
step for large layers; it needs a GPU to tune, which these sessions did not have.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.ops._conv_cpu import PLAN_HEAD
from nbcaffe.registry import register_kernel


@cuda.jit(device=True)
def _load(a, nchw, n, c, d, h, w):
    if nchw:
        return a[n, c, d, h, w]
    return a[n, d, h, w, c]


@cuda.jit(device=True)
def _decode(i, nchw, channels, D, H, W):
    """(n, c, d, h, w) of flat index i of a 5-D NCHW / NHWC tensor with these sizes."""
    if nchw:
        w = i % W
        i //= W
        h = i % H
        i //= H
        d = i % D
        i //= D
        c = i % channels
        n = i // channels
    else:
        c = i % channels
        i //= channels
        w = i % W
        i //= W
        h = i % H
        i //= H
        d = i % D
        n = i // D
    return n, c, d, h, w


@cuda.jit
def conv_forward_kernel(x, w, b, y, has_bias, nchw, group, p):
    """y[n, m, o] = b[m] + sum_{c in group(m), k} w[m, c, k] x[n, g*Cg + c, o*s - pad + k*dil]."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    m_total = w.shape[0]
    cg = w.shape[1] if nchw else w.shape[4]
    mg = m_total // group
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, m, od, oh, ow = _decode(i, nchw, m_total, Do, Ho, Wo)
        c0 = (m // mg) * cg
        acc = 0.0
        for kd in range(KD):
            idd = od * SD - PD + kd * DD
            if idd < 0 or idd >= D:
                continue
            for kh in range(KH):
                ih = oh * SH - PH + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ow * SW - PW + kw * DW
                    if iw < 0 or iw >= W:
                        continue
                    for c in range(cg):
                        if nchw:
                            acc += w[m, c, kd, kh, kw] * x[n, c0 + c, idd, ih, iw]
                        else:
                            acc += w[m, kd, kh, kw, c] * x[n, idd, ih, iw, c0 + c]
        if has_bias:
            acc += b[m]
        if nchw:
            y[n, m, od, oh, ow] = acc
        else:
            y[n, od, oh, ow, m] = acc


@cuda.jit(device=True)
def _tap_output(i, pad, k, dil, s, n_out):
    """The output index o with o*s - pad + k*dil == i, or -1."""
    num = i + pad - k * dil
    if num < 0 or num % s != 0:
        return -1
    o = num // s
    if o >= n_out:
        return -1
    return o


@cuda.jit
def conv_backward_data_kernel(dy, w, dx, add_bias, b, nchw, group, p):
    """dx[n, c, i] = sum over (m in group(c), tap k) with o*s - pad + k*dil = i of w[m, c, k] dy[n, m, o]
    (+ b[c] when add_bias: ConvTranspose)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    m_total = w.shape[0]
    cg = w.shape[1] if nchw else w.shape[4]
    mg = m_total // group
    c_total = cg * group
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, idd, ih, iw = _decode(i, nchw, c_total, D, H, W)
        g = c // cg
        cl = c - g * cg
        acc = 0.0
        for kd in range(KD):
            od = _tap_output(idd, PD, kd, DD, SD, Do)
            if od < 0:
                continue
            for kh in range(KH):
                oh = _tap_output(ih, PH, kh, DH, SH, Ho)
                if oh < 0:
                    continue
                for kw in range(KW):
                    ow = _tap_output(iw, PW, kw, DW, SW, Wo)
                    if ow < 0:
                        continue
                    for m in range(g * mg, (g + 1) * mg):
                        if nchw:
                            acc += w[m, cl, kd, kh, kw] * dy[n, m, od, oh, ow]
                        else:
                            acc += w[m, kd, kh, kw, cl] * dy[n, od, oh, ow, m]
        if add_bias:
            acc += b[c]
        if nchw:
            dx[n, c, idd, ih, iw] = acc
        else:
            dx[n, idd, ih, iw, c] = acc


@cuda.jit
def conv_backward_filter_kernel(x, dy, dw, nchw, group, p):
    """dw[m, c, k] = sum_{n, o} dy[n, m, o] x[n, g*Cg + c, o*s - pad + k*dil] (one thread per dw cell)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    m_total = dw.shape[0]
    cg = dw.shape[1] if nchw else dw.shape[4]
    mg = m_total // group
    n_images = x.shape[0]
    for i in range(cuda.grid(1), dw.size, cuda.gridsize(1)):
        # dw is (M, Cg, KD, KH, KW) or (M, KD, KH, KW, Cg): decode as a 5-D tensor of batch M
        m, c, kd, kh, kw = _decode(i, nchw, cg, KD, KH, KW)
        c_in = (m // mg) * cg + c
        acc = 0.0
        for n in range(n_images):
            for od in range(Do):
                idd = od * SD - PD + kd * DD
                if idd < 0 or idd >= D:
                    continue
                for oh in range(Ho):
                    ih = oh * SH - PH + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    for ow in range(Wo):
                        iw = ow * SW - PW + kw * DW
                        if iw < 0 or iw >= W:
                            continue
                        acc += _load(dy, nchw, n, m, od, oh, ow) * _load(x, nchw, n, c_in, idd, ih, iw)
        if nchw:
            dw[m, c, kd, kh, kw] = acc
        else:
            dw[m, kd, kh, kw, c] = acc


@cuda.jit
def bias_grad_kernel(dy, db, nchw):
    """db[m] = sum of dy over images and positions (one thread per channel)."""
    channels = db.size
    n_images = dy.shape[0]
    if nchw:
        D, H, W = dy.shape[2], dy.shape[3], dy.shape[4]
    else:
        D, H, W = dy.shape[1], dy.shape[2], dy.shape[3]
    for m in range(cuda.grid(1), channels, cuda.gridsize(1)):
        acc = 0.0
        for n in range(n_images):
            for d in range(D):
                for h in range(H):
                    for w in range(W):
                        acc += _load(dy, nchw, n, m, d, h, w)
        db[m] = acc


def launch_forward(x, w, b, y, has_bias, nchw, group, p):
    if y.size:
        conv_forward_kernel[blocks_for(y.size), THREADS](x, w, b, y, has_bias, nchw, group, p)


def launch_backward_data(dy, w, dx, add_bias, b, nchw, group, p):
    if dx.size:
        conv_backward_data_kernel[blocks_for(dx.size), THREADS](dy, w, dx, add_bias, b, nchw, group, p)


def launch_backward_filter(x, dy, dw, nchw, group, p):
    if dw.size:
        conv_backward_filter_kernel[blocks_for(dw.size), THREADS](x, dy, dw, nchw, group, p)


def launch_bias_grad(dy, db, nchw):
    if db.size:
        bias_grad_kernel[blocks_for(db.size), THREADS](dy, db, nchw)


@register_kernel("Conv", CUDA)
def conv_launch(x, w, b, y, plan, scratch):
    """Launcher with conv_cpu's signature."""
    launch_forward(x, w, b, y, plan[2], plan[0], plan[1], plan[PLAN_HEAD:])


@register_kernel("ConvGradient", CUDA)
def conv_gradient_launch(x, w, dy, dw, db, dx, plans, scratch):
    """Launcher with conv_gradient_cpu's signature."""
    plan = plans[0]
    nchw, group, p = plan[0], plan[1], plan[PLAN_HEAD:]
    launch_bias_grad(dy, db, nchw)
    launch_backward_filter(x, dy, dw, nchw, group, p)
    launch_backward_data(dy, w, dx, False, db, nchw, group, p)
