"""CUDA kernels for nbcaffe/ops/cross_entropy.py (same ops, same order).

SoftmaxWithLoss runs as two kernels: a row kernel (one block per softmax row) writes the
probabilities plus each row's weighted loss and weight, then a one-block reduction forms
the mean.  Rows are described generically — row r starts at ``(r // inner) * length *
inner + r % inner`` and its elements are ``inner`` apart — so the plain (N, D) layout
(inner = 1) and the spatial (N, C, H*W) layout (inner = H*W) share one kernel.  Label
range errors are flagged in a device word and raised on the host, like the CPU kernels.

Gradients follow the CPU kernels' contracts; where the CPU kernel stops at the first bad
label the device kernels finish every row and report the smallest bad row, which the
caller turns into the same error.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import ROW_THREADS, THREADS, blocks_for
from nbcaffe.cuda.activation import block_max, block_sum
from nbcaffe.devices import CUDA
from nbcaffe.ops.cross_entropy import SoftmaxLossGradKernels, SoftmaxLossKernels
from nbcaffe.registry import register_kernel

MODE_LABEL, MODE_PROB, MODE_SPATIAL = 0, 1, 2


@cuda.jit
def softmax_loss_rows_kernel(x, label, weight, use_weight, mode, length, inner, p, row_loss, row_weight, bad):
    """Softmax of every row of flat x into flat p; row_loss[r], row_weight[r] for the mean.

    mode 0: int label per row; mode 1: label is a probability row laid out like x;
    mode 2: int label per row with -1 = ignore.  bad[0] receives 1 + the first bad row.
    """
    shared_max = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_sum = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n_rows = row_loss.size
    for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
        base = (r // inner) * length * inner + r % inner
        m = -math.inf
        for j in range(tid, length, ROW_THREADS):
            v = x[base + j * inner]
            if v > m:
                m = v
        shared_max[tid] = m
        cuda.syncthreads()  # partial maxima visible before reducing
        block_max(shared_max, tid)
        m = shared_max[0]
        acc = 0.0
        for j in range(tid, length, ROW_THREADS):
            e = math.exp(x[base + j * inner] - m)
            p[base + j * inner] = e
            acc += e
        shared_sum[tid] = acc
        cuda.syncthreads()  # partial sums visible before reducing
        block_sum(shared_sum, tid)
        total = shared_sum[0]
        inv = 1.0 / total
        for j in range(tid, length, ROW_THREADS):
            p[base + j * inner] *= inv
        cuda.syncthreads()  # probabilities written (mode 1 reads them) and shared arrays free
        w = weight[r] if use_weight else 1.0
        if mode == MODE_PROB:
            part = 0.0
            for j in range(tid, length, ROW_THREADS):
                part += -math.log(max(p[base + j * inner], 1e-20)) * label[base + j * inner]
            shared_sum[tid] = part
            cuda.syncthreads()  # partial row losses visible before reducing
            block_sum(shared_sum, tid)
            if tid == 0:
                row_loss[r] = shared_sum[0] * w
                row_weight[r] = w
        elif tid == 0:
            lab = int(label[r])
            if mode == MODE_SPATIAL and lab == -1:
                row_loss[r] = 0.0
                row_weight[r] = 0.0
            elif lab < 0 or lab >= length:
                cuda.atomic.min(bad, 0, r)
                row_loss[r] = 0.0
                row_weight[r] = 0.0
            elif mode == MODE_SPATIAL:
                row_loss[r] = -math.log(max(p[base + lab * inner], 1e-20)) * w
                row_weight[r] = w
            else:
                # log-softmax directly, finite even where p underflows
                row_loss[r] = -(x[base + lab * inner] - m - math.log(total)) * w
                row_weight[r] = w
        cuda.syncthreads()  # shared arrays are reused by this block's next row


@cuda.jit
def weighted_mean_kernel(row_loss, row_weight, scale, loss):
    """loss[0] = scale * sum(row_loss) / sum(row_weight) (0 when the weights sum to 0); 1 block."""
    shared_loss = cuda.shared.array(ROW_THREADS, numba.float64)
    shared_weight = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    a = 0.0
    b = 0.0
    for i in range(tid, row_loss.size, ROW_THREADS):
        a += row_loss[i]
        b += row_weight[i]
    shared_loss[tid] = a
    shared_weight[tid] = b
    cuda.syncthreads()  # partial sums visible before reducing
    block_sum(shared_loss, tid)
    block_sum(shared_weight, tid)
    if tid == 0:
        loss[0] = shared_loss[0] * scale / shared_weight[0] if shared_weight[0] != 0.0 else 0.0


def _softmax_loss(mode):
    def launch(x, label, weight, use_weight, p, loss, scale):
        """Launcher with the CPU kernels' signature; returns -1 or the first bad label's row."""
        if mode == MODE_SPATIAL:
            n, length, inner = x.shape
        else:
            n, length = x.shape
            inner = 1
        rows = n * inner
        x_flat = x.reshape(x.size)
        p_flat = p.reshape(p.size)
        label_flat = label.reshape(label.size)
        weight_flat = weight.reshape(weight.size)
        row_loss = cuda.device_array(rows, np.float64)
        row_weight = cuda.device_array(rows, np.float64)
        bad = cuda.to_device(np.array([rows], np.int64))
        if rows:
            softmax_loss_rows_kernel[max(1, min(rows, 4096)), ROW_THREADS](
                x_flat, label_flat, weight_flat, use_weight, mode, length, inner, p_flat, row_loss, row_weight, bad)
        weighted_mean_kernel[1, ROW_THREADS](row_loss, row_weight, scale, loss)
        first_bad = int(bad.copy_to_host()[0])
        return first_bad if first_bad < rows else -1

    return launch


register_kernel("SoftmaxWithLoss", CUDA)(
    SoftmaxLossKernels(_softmax_loss(MODE_LABEL), _softmax_loss(MODE_PROB), _softmax_loss(MODE_SPATIAL)))


@cuda.jit
def label_cross_entropy_kernel(x, label, y, bad):
    """y[i] = -log(max(x[i, label[i]], 1e-20)); bad[0] = min bad row."""
    n = x.shape[0]
    d = x.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lab = int(label[i])
        if lab < 0 or lab >= d:
            cuda.atomic.min(bad, 0, i)
            y[i] = 0
        else:
            y[i] = -math.log(max(x[i, lab], 1e-20))


@register_kernel("LabelCrossEntropy", CUDA)
def label_cross_entropy_launch(x, label, y):
    n = x.shape[0]
    bad = cuda.to_device(np.array([n], np.int64))
    label_cross_entropy_kernel[blocks_for(n), THREADS](x, label, y, bad)
    first_bad = int(bad.copy_to_host()[0])
    return first_bad if first_bad < n else -1


@cuda.jit
def cross_entropy_kernel(x, label, y):
    """y[i] = -sum_j label[i, j] * log(max(x[i, j], 1e-20)); one thread per row."""
    n = x.shape[0]
    d = x.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        total = 0.0
        for j in range(d):
            total -= label[i, j] * math.log(max(x[i, j], 1e-20))
        y[i] = total


@register_kernel("CrossEntropy", CUDA)
def cross_entropy_launch(x, label, y):
    cross_entropy_kernel[blocks_for(x.shape[0]), THREADS](x, label, y)


# ----------------------------------------------------------------------------- gradients


@cuda.jit
def softmax_loss_grad_weights_kernel(label, weight, use_weight, ignore_minus_one, length, mode, row_w, bad):
    """row_w[r] = weight of row r in the mean: 0 for ignored (-1) and out-of-range labels;
    bad[0] receives the smallest out-of-range row."""
    for r in range(cuda.grid(1), row_w.size, cuda.gridsize(1)):
        w = weight[r] if use_weight else 1.0
        if mode == MODE_PROB:
            row_w[r] = w
            continue
        lab = int(label[r])
        if ignore_minus_one and lab == -1:
            row_w[r] = 0.0
        elif lab < 0 or lab >= length:
            cuda.atomic.min(bad, 0, r)
            row_w[r] = 0.0
        else:
            row_w[r] = w


@cuda.jit
def total_kernel(x, out):
    """out[0] = sum(x); one block."""
    shared = cuda.shared.array(ROW_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, x.size, ROW_THREADS):
        acc += x[i]
    shared[tid] = acc
    cuda.syncthreads()  # partial sums visible before reducing
    block_sum(shared, tid)
    if tid == 0:
        out[0] = shared[0]


@cuda.jit
def softmax_loss_grad_kernel(p, label, row_w, total, dloss, scale, ignore_minus_one, length, inner, mode, dx):
    """dx[k] = (p[k] - target[k]) * w[row] * scale * dloss / sum(w); target is the one-hot
    label (modes 0/2, element k is class (k // inner) % length of row (k // (length * inner))
    * inner + k % inner) or the probability label laid out like p (mode 1).  Ignored rows get 0."""
    factor = scale * dloss[0] / total[0] if total[0] > 0.0 else 0.0
    span = length * inner
    for k in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        if mode == MODE_PROB:
            dx[k] = (p[k] - label[k]) * row_w[k // length] * factor
            continue
        outer = k // span
        rem = k - outer * span
        j = rem // inner
        r = outer * inner + rem - j * inner
        lab = int(label[r])
        if ignore_minus_one and lab == -1:
            dx[k] = 0.0
        else:
            onehot = 1.0 if j == lab else 0.0
            dx[k] = (p[k] - onehot) * row_w[r] * factor


def _softmax_loss_grad(p, label, weight, use_weight, ignore_minus_one, length, inner, dloss, scale, dx, mode):
    rows = dx.size // length
    row_w = cuda.device_array(rows, np.float64)
    total = cuda.device_array(1, np.float64)
    bad = cuda.to_device(np.array([rows], np.int64))
    softmax_loss_grad_weights_kernel[blocks_for(rows), THREADS](
        label, weight, use_weight, ignore_minus_one, length, mode, row_w, bad)
    total_kernel[1, ROW_THREADS](row_w, total)
    softmax_loss_grad_kernel[blocks_for(dx.size), THREADS](
        p, label, row_w, total, dloss, scale, ignore_minus_one, length, inner, mode, dx)
    first_bad = int(bad.copy_to_host()[0])
    return first_bad if first_bad < rows else -1


def softmax_loss_grad_launch(p, label, weight, use_weight, ignore_minus_one, length, inner, dloss, scale, dx):
    """Launcher with softmax_loss_grad_cpu's signature; returns -1 or the first bad label's row."""
    mode = MODE_SPATIAL if ignore_minus_one else MODE_LABEL
    return _softmax_loss_grad(p, label, weight, use_weight, ignore_minus_one, length, inner, dloss, scale, dx, mode)


def softmax_loss_prob_grad_launch(p, label, weight, use_weight, length, dloss, scale, dx):
    """Launcher with softmax_loss_prob_grad_cpu's signature; always returns -1."""
    return _softmax_loss_grad(p, label, weight, use_weight, False, length, 1, dloss, scale, dx, MODE_PROB)


register_kernel("SoftmaxWithLossGradient", CUDA)(
    SoftmaxLossGradKernels(softmax_loss_grad_launch, softmax_loss_prob_grad_launch))


@cuda.jit
def label_cross_entropy_grad_kernel(x, label, dy, dx, bad):
    """dx[i, label[i]] = -dy[i] / max(x[i, label[i]], 1e-20), 0 elsewhere; one thread per
    element of dx; bad[0] receives the smallest out-of-range row (its dx row stays 0)."""
    n = x.shape[0]
    d = x.shape[1]
    for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
        i = k // d
        j = k - i * d
        lab = int(label[i])
        if lab < 0 or lab >= d:
            if j == 0:
                cuda.atomic.min(bad, 0, i)
            dx[i, j] = 0
        elif j == lab:
            dx[i, j] = -dy[i] / max(x[i, j], 1e-20)
        else:
            dx[i, j] = 0


@register_kernel("LabelCrossEntropyGradient", CUDA)
def label_cross_entropy_grad_launch(x, label, dy, dx):
    """Launcher with label_cross_entropy_grad_cpu's signature; returns -1 or a bad row."""
    n, d = tuple(x.shape)
    bad = cuda.to_device(np.array([n], np.int64))
    if n * d:
        label_cross_entropy_grad_kernel[blocks_for(n * d), THREADS](x, label, dy, dx, bad)
    first_bad = int(bad.copy_to_host()[0])
    return first_bad if first_bad < n else -1


@cuda.jit
def cross_entropy_grad_kernel(x, label, dy, dx):
    """dx[i, j] = -dy[i] * label[i, j] / max(x[i, j], 1e-20); one thread per element."""
    n = x.shape[0]
    d = x.shape[1]
    for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
        i = k // d
        j = k - i * d
        dx[i, j] = -dy[i] * label[i, j] / max(x[i, j], 1e-20)


@register_kernel("CrossEntropyGradient", CUDA)
def cross_entropy_grad_launch(x, label, dy, dx):
    n, d = tuple(x.shape)
    if n * d:
        cross_entropy_grad_kernel[blocks_for(n * d), THREADS](x, label, dy, dx)
