"""Kernels of the parameter-update ops (nbcaffe/ops/training.py): nogil numba loops over flat
slices, and the split of large updates over nbcaffe.threads' pool.

Updates of at least PARALLEL_UPDATE_MIN elements are split over the pool (memory-bound
passes: two cores move more bytes per second than one; LeNet's fc3_w, 400k floats, is one such
update per step).  Outputs that are the same arrays as inputs (the in-place wiring every
optimizer uses) get kernels that read and write one array: two views of the same memory
defeat LLVM's alias checks, and the loop then runs scalar.
"""

from __future__ import annotations

import math

import numba

from nbcaffe import threads

PARALLEL_UPDATE_MIN = 1 << 16


def split_update(n, fn):
    """fn(lo, hi) over [0, n): one call, or per-thread slices (multiples of 64) on the pool."""
    workers = threads.get_num_threads()
    if n < PARALLEL_UPDATE_MIN or workers < 2:
        fn(0, n)
        return
    tasks = 2 * workers
    per_task = -(-n // tasks)
    step = -(-per_task // 64) * 64
    threads.run_tasks(lambda t, _worker: fn(t * step, min(n, (t + 1) * step)), -(-n // step), workers)


@numba.njit(cache=True, nogil=True)
def scale_into(x, w, out):
    """out = w * x (w: 1-element array)."""
    w0 = w[0]
    for i in range(out.size):
        out[i] = w0 * x[i]


@numba.njit(cache=True, nogil=True)
def scale_inplace(out, w):
    """out = w * out."""
    w0 = w[0]
    for i in range(out.size):
        out[i] = w0 * out[i]


@numba.njit(cache=True, nogil=True)
def axpy(x, w, out):
    """out += w * x."""
    w0 = w[0]
    for i in range(out.size):
        out[i] += w0 * x[i]


@numba.njit(cache=True, nogil=True)
def axpby_inplace(out, w0, x, w1):
    """out = w0 * out + w1 * x in one pass (the plain SGD update param = 1 * param + lr * grad)."""
    a = w0[0]
    b = w1[0]
    for i in range(out.size):
        out[i] = a * out[i] + b * x[i]


@numba.njit(cache=True, nogil=True)
def momentum_inplace(g, m, lr, param, momentum, nesterov):
    """Momentum SGD on disjoint flat arrays: g and m are overwritten with the step and the new
    moment (the optimizer's in-place wiring)."""
    rate = lr[0]
    if nesterov:
        for i in range(g.size):
            gi = g[i]
            mi = m[i]
            mi_new = momentum * mi + rate * gi
            m[i] = mi_new
            g[i] = (1.0 + momentum) * mi_new - momentum * mi
            param[i] -= g[i]
    else:
        for i in range(g.size):
            adjusted = rate * g[i] + momentum * m[i]
            m[i] = adjusted
            g[i] = adjusted
            param[i] -= g[i]


@numba.njit(cache=True, nogil=True)
def adam(param, m1, m2, g, lr, it, beta1, beta2, eps):
    """Adam on flat arrays, in place; lr[0] is negative for descent, it[0] the iteration."""
    t = it[0] + 1
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    rate = lr[0]
    for i in range(param.size):
        gi = g[i]
        mi = m1[i] * beta1 + gi * (1.0 - beta1)
        vi = m2[i] * beta2 + gi * gi * (1.0 - beta2)
        m1[i] = mi
        m2[i] = vi
        param[i] += rate * correction * mi / (math.sqrt(vi) + eps)


@numba.njit(cache=True, nogil=True)
def adagrad(param, h, g, lr, eps, decay):
    """Adagrad on flat arrays, in place; lr[0] negative for descent."""
    rate = lr[0]
    for i in range(param.size):
        gi = g[i]
        hi = decay * h[i] + gi * gi
        h[i] = hi
        param[i] += rate * gi / (math.sqrt(hi) + eps)


@numba.njit(cache=True, nogil=True)
def rmsprop(g, ms, mom, lr, decay, momentum, eps):
    """RmsProp on flat arrays, in place: the new gradient (the step) replaces g."""
    rate = lr[0]
    for i in range(g.size):
        gi = g[i]
        nms = ms[i] + (1.0 - decay) * (gi * gi - ms[i])
        ms[i] = nms
        nmom = mom[i] * momentum + rate * gi / math.sqrt(eps + nms)
        mom[i] = nmom
        g[i] = nmom
