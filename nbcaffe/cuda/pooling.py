"""CUDA kernels for nbcaffe/ops/pooling.py: one thread per output (forward) or per input cell
(gradients, gathering over the windows that contain the cell: no atomics, deterministic).

MaxPoolGradient first records each window's argmax (the forward's first-max / first-NaN
rule) in an int32 scratch array, then gathers; MaxPoolWithIndexGradient gathers with the
mask it is given.  The window bounds come from the CPU kernels' ``_bounds`` compiled as a
device function, so both devices clip windows with the same code.
"""

from __future__ import annotations

from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.cuda.conv import _decode, _load, _tap_output
from nbcaffe.devices import CUDA
from nbcaffe.ops import _pool_kernels as cpu
from nbcaffe.registry import register_kernel

_bounds = cuda.jit(device=True)(cpu._bounds.py_func)


@cuda.jit
def max_pool_kernel(x, y, mask, write_y, write_mask, nchw, p):
    """y[n, c, o] = window max (first max / first NaN wins), mask[i] = its flat spatial index."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    channels = x.shape[1] if nchw else x.shape[4]
    total = x.shape[0] * channels * Do * Ho * Wo
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, od, oh, ow = _decode(i, nchw, channels, Do, Ho, Wo)
        sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
        sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
        sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
        bd = sd + d0 * DD
        bh = sh + h0 * DH
        bw = sw + w0 * DW
        best = _load(x, nchw, n, c, bd, bh, bw)
        for kd in range(d0, d1):
            idd = sd + kd * DD
            for kh in range(h0, h1):
                ih = sh + kh * DH
                for kw in range(w0, w1):
                    iw = sw + kw * DW
                    v = _load(x, nchw, n, c, idd, ih, iw)
                    if v > best or (v != v and best == best):
                        best = v
                        bd = idd
                        bh = ih
                        bw = iw
        if write_y:
            if nchw:
                y[n, c, od, oh, ow] = best
            else:
                y[n, od, oh, ow, c] = best
        if write_mask:
            mask[i] = (bd * H + bh) * W + bw


@cuda.jit
def avg_pool_kernel(x, y, include_pad, nchw, p):
    """y[n, c, o] = mean of the window's image cells (or / kernel volume)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    channels = x.shape[1] if nchw else x.shape[4]
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, od, oh, ow = _decode(i, nchw, channels, Do, Ho, Wo)
        sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
        sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
        sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
        acc = 0.0
        for kd in range(d0, d1):
            for kh in range(h0, h1):
                for kw in range(w0, w1):
                    acc += _load(x, nchw, n, c, sd + kd * DD, sh + kh * DH, sw + kw * DW)
        count = KD * KH * KW if include_pad else (d1 - d0) * (h1 - h0) * (w1 - w0)
        if nchw:
            y[n, c, od, oh, ow] = acc / count
        else:
            y[n, od, oh, ow, c] = acc / count


@cuda.jit(device=True)
def _flat_out(n, c, od, oh, ow, nchw, channels, Do, Ho, Wo):
    if nchw:
        return (((n * channels + c) * Do + od) * Ho + oh) * Wo + ow
    return (((n * Do + od) * Ho + oh) * Wo + ow) * channels + c


@cuda.jit
def pool_grad_kernel(dy, mask, dx, average, include_pad, nchw, p):
    """dx[n, c, i] = sum over windows o containing i of dy[o] / count(o) (average) or of dy[o]
    where mask[o] == i (max)."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    channels = dx.shape[1] if nchw else dx.shape[4]
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, idd, ih, iw = _decode(i, nchw, channels, D, H, W)
        own = (idd * H + ih) * W + iw
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
                    g = _load(dy, nchw, n, c, od, oh, ow)
                    if average:
                        sd, d0, d1 = _bounds(od, SD, PD, KD, DD, D)
                        sh, h0, h1 = _bounds(oh, SH, PH, KH, DH, H)
                        sw, w0, w1 = _bounds(ow, SW, PW, KW, DW, W)
                        count = KD * KH * KW if include_pad else (d1 - d0) * (h1 - h0) * (w1 - w0)
                        acc += g / count
                    elif mask[_flat_out(n, c, od, oh, ow, nchw, channels, Do, Ho, Wo)] == own:
                        acc += g
        if nchw:
            dx[n, c, idd, ih, iw] = acc
        else:
            dx[n, idd, ih, iw, c] = acc


def _n_out(x, nchw, p):
    channels = x.shape[1] if nchw else x.shape[4]
    return x.shape[0] * channels * p[3] * p[4] * p[5]


@register_kernel("MaxPool", CUDA)
def max_pool_launch(x, y, mask, plan):
    """Launcher with max_pool_cpu's signature (also MaxPoolWithIndex's)."""
    nchw, _, want_mask = plan[:3]
    p = plan[3:]
    total = _n_out(x, nchw, p)
    if total:
        max_pool_kernel[blocks_for(total), THREADS](x, y, mask, True, want_mask, nchw, p)


register_kernel("MaxPoolWithIndex", CUDA)(max_pool_launch)


@register_kernel("AveragePool", CUDA)
def avg_pool_launch(x, y, plan):
    """Launcher with avg_pool_cpu's signature."""
    if y.size:
        avg_pool_kernel[blocks_for(y.size), THREADS](x, y, plan[1], plan[0], plan[3:])


@register_kernel("MaxPoolGradient", CUDA)
def max_pool_grad_launch(x, y, dy, dx, plan, scratch):
    """Launcher with max_pool_grad_cpu's signature: argmax per window into scratch[0], then gather."""
    nchw, p = plan[0], plan[3:]
    mask = scratch[0]
    total = _n_out(x, nchw, p)
    if total:
        max_pool_kernel[blocks_for(total), THREADS](x, y, mask, False, True, nchw, p)
    if dx.size:
        pool_grad_kernel[blocks_for(dx.size), THREADS](dy, mask, dx, False, False, nchw, p)


@register_kernel("AveragePoolGradient", CUDA)
def avg_pool_grad_launch(x, y, dy, dx, plan, scratch):
    """Launcher with avg_pool_grad_cpu's signature (the mask argument is unused)."""
    if dx.size:
        pool_grad_kernel[blocks_for(dx.size), THREADS](dy, dy.reshape(dy.size), dx, True, plan[1], plan[0], plan[3:])


@register_kernel("MaxPoolWithIndexGradient", CUDA)
def index_grad_launch(x, dy, mask, dx, plan):
    """Launcher with index_grad_cpu's signature."""
    if dx.size:
        pool_grad_kernel[blocks_for(dx.size), THREADS](dy, mask, dx, False, False, plan[0], plan[3:])
