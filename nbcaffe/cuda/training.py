"""CUDA kernels for nbcaffe/ops/training.py.

Counters and the learning-rate schedule are host work (the iteration counter lives on the
host, as in Caffe2); LearningRate computes the value on the host and writes the device
scalar.  Update rules and Accuracy run as device kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nbcaffe.cuda._launch import THREADS, blocks_for
from nbcaffe.devices import CUDA
from nbcaffe.ops import training as cpu
from nbcaffe.registry import register_kernel

register_kernel("Iter", CUDA)(cpu.iter_cpu)
register_kernel("AtomicIter", CUDA)(cpu.iter_cpu)
register_kernel("CreateMutex", CUDA)(cpu.create_mutex_cpu)


@register_kernel("LearningRate", CUDA)
def learning_rate_launch(counter, out, base_lr, policy_args):
    """counter: host int64 [1]; out: device [1]."""
    value = base_lr * cpu.lr_multiplier(policy_args[0], counter[0], *policy_args[1:])
    out.copy_to_device(np.array([value], dtype=out.dtype))


@cuda.jit
def scale_kernel(x, w, out):
    """out[i] = w[0] * x[i]."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = w[0] * x[i]


@cuda.jit
def axpy_kernel(x, w, out):
    """out[i] += w[0] * x[i]."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] += w[0] * x[i]


@register_kernel("WeightedSum", CUDA)
def weighted_sum_launch(xs, ws, out):
    blocks = blocks_for(out.size)
    scale_kernel[blocks, THREADS](xs[0], ws[0], out)
    for x, w in zip(xs[1:], ws[1:]):
        axpy_kernel[blocks, THREADS](x, w, out)


@cuda.jit
def momentum_sgd_kernel(g, m, lr, param, momentum, nesterov, ng, nm):
    """Momentum SGD, elementwise (see momentum_sgd_cpu)."""
    rate = lr[0]
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        gi = g[i]
        mi = m[i]
        if nesterov:
            mi_new = momentum * mi + rate * gi
            nm[i] = mi_new
            ng[i] = (1.0 + momentum) * mi_new - momentum * mi
        else:
            adjusted = rate * gi + momentum * mi
            nm[i] = adjusted
            ng[i] = adjusted
        param[i] -= ng[i]


@register_kernel("MomentumSGDUpdate", CUDA)
def momentum_sgd_launch(g, m, lr, param, momentum, nesterov, ng, nm):
    momentum_sgd_kernel[blocks_for(g.size), THREADS](g, m, lr, param, momentum, nesterov, ng, nm)


@cuda.jit
def adam_kernel(param, m1, m2, g, lr, correction, beta1, beta2, eps):
    """Adam, elementwise; correction = sqrt(1-b2^t)/(1-b1^t) computed on the host."""
    rate = lr[0]
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        gi = g[i]
        mi = m1[i] * beta1 + gi * (1.0 - beta1)
        vi = m2[i] * beta2 + gi * gi * (1.0 - beta2)
        m1[i] = mi
        m2[i] = vi
        param[i] += rate * correction * mi / (math.sqrt(vi) + eps)


@register_kernel("Adam", CUDA)
def adam_launch(param, m1, m2, g, lr, it, beta1, beta2, eps):
    """it: host int64 [1] (the bias correction is a host scalar)."""
    t = int(it[0]) + 1
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    adam_kernel[blocks_for(param.size), THREADS](param, m1, m2, g, lr, correction, beta1, beta2, eps)


@cuda.jit
def adagrad_kernel(param, h, g, lr, eps, decay):
    """Adagrad, elementwise."""
    rate = lr[0]
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        gi = g[i]
        hi = decay * h[i] + gi * gi
        h[i] = hi
        param[i] += rate * gi / (math.sqrt(hi) + eps)


@register_kernel("Adagrad", CUDA)
def adagrad_launch(param, h, g, lr, eps, decay):
    adagrad_kernel[blocks_for(param.size), THREADS](param, h, g, lr, eps, decay)


@cuda.jit
def rmsprop_kernel(g, ms, mom, lr, decay, momentum, eps):
    """RmsProp, elementwise; the step replaces g."""
    rate = lr[0]
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        gi = g[i]
        nms = ms[i] + (1.0 - decay) * (gi * gi - ms[i])
        ms[i] = nms
        nmom = mom[i] * momentum + rate * gi / math.sqrt(eps + nms)
        mom[i] = nmom
        g[i] = nmom


@register_kernel("RmsProp", CUDA)
def rmsprop_launch(g, ms, mom, lr, decay, momentum, eps):
    rmsprop_kernel[blocks_for(g.size), THREADS](g, ms, mom, lr, decay, momentum, eps)


@cuda.jit
def accuracy_rows_kernel(x, label, top_k, hits, bad):
    """hits[i] = 1 when row i's label ranks in the top_k; bad[0] = min bad row."""
    n = x.shape[0]
    d = x.shape[1]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lab = int(label[i])
        if lab < 0 or lab >= d:
            cuda.atomic.min(bad, 0, i)
            hits[i] = 0
            continue
        target = x[i, lab]
        better = 0
        for j in range(d):
            if x[i, j] > target or (x[i, j] == target and j < lab):
                better += 1
        hits[i] = 1 if better < top_k else 0


@register_kernel("Accuracy", CUDA)
def accuracy_launch(x, label, top_k, out):
    n = x.shape[0]
    hits = cuda.device_array(max(n, 1), np.int64)
    bad = cuda.to_device(np.array([n], np.int64))
    if n:
        accuracy_rows_kernel[blocks_for(n), THREADS](x, label, top_k, hits, bad)
    first_bad = int(bad.copy_to_host()[0])
    if first_bad < n:
        return first_bad
    correct = int(hits.copy_to_host()[:n].sum()) if n else 0
    out.copy_to_device(np.array([correct / n if n else 0.0], dtype=out.dtype))
    return -1
