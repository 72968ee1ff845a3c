"""The reduction plan and its CPU kernels, shared by the axis reductions (reduce_axes.py),
BatchMatMulGradient's batch sums (linalg.py) and, for its size threshold, ArgMax/ArgMin (reduction.py).

ReduceSum/Mean/Max/Min (axes, keepdims), ReduceFront*/ReduceBack* (num_reduce_dim) and the
gradients of both share one pair of kernels over a *reduction plan*: the input's dims with
size-1 dims dropped and neighbours of the same kind (reduced or kept) merged, so any axes
list becomes alternating groups, e.g. (2, 3, 4, 5) over axes (1, 2) -> dims (2, 12, 5),
flags (0, 1, 0).  The output is the kept groups in C order.  nbcaffe/cuda/_reduce_util.py
holds the CUDA launchers with the same arguments.
"""

from __future__ import annotations

import numba
import numpy as np

from nbcaffe.ops._elementwise import SizeSwitch

MODE_SUM, MODE_MAX, MODE_MIN = 0, 1, 2


def reduce_plan(shape, axes):
    """(dims, flags) int64 arrays: ``shape`` collapsed into alternating kept (0) and reduced (1)
    groups, size-1 dims dropped; at least one group."""
    axes = set(axes)
    dims, flags = [], []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        flag = 1 if d in axes else 0
        if dims and flags[-1] == flag:
            dims[-1] *= n
        else:
            dims.append(n)
            flags.append(flag)
    if not dims:
        dims, flags = [1], [0]
    return np.asarray(dims, np.int64), np.asarray(flags, np.int64)


@numba.njit(cache=True)
def _advance(index, dims, last):
    """Step the odometer ``index`` over dims[0:last]; True when it wrapped around."""
    d = last - 1
    while d >= 0:
        index[d] += 1
        if index[d] < dims[d]:
            return False
        index[d] = 0
        d -= 1
    return True


@numba.njit(cache=True)
def _replaces(v, current, take_max):
    """Whether v replaces ``current`` as the running max (min): larger (smaller), or NaN; a NaN
    already held is kept, so NaN propagates whatever the order (ints never compare unequal)."""
    return current == current and (v != v or (v > current if take_max else v < current))


@numba.njit(cache=True, fastmath={"reassoc"})  # reassociation lets the sums vectorise; NaN still propagates
def reduce_cpu(x, y, dims, flags, mode, scale):
    """y (flat, the kept groups in C order) = sum / max / min (``mode``) of flat x over the
    groups with flags == 1, times ``scale`` for sums (the mean's 1/count).

    x is walked once in memory order, one innermost run at a time: a kept innermost group
    updates a row of y (vectorisable), a reduced one is folded into one accumulator.  Max and
    min start from the first element of each window (no sentinel: any dtype) and propagate NaN.
    """
    ndim = dims.size
    inner = dims[ndim - 1]
    inner_reduced = flags[ndim - 1] == 1
    take_max = mode == MODE_MAX
    ystride = np.zeros(ndim, np.int64)
    step = 1
    for d in range(ndim - 1, -1, -1):
        if flags[d] == 0:
            ystride[d] = step
            step *= dims[d]
    if mode == MODE_SUM:
        for i in range(y.size):
            y[i] = 0 * scale  # an empty sum is 0, an empty mean NaN (scale = NaN then)
    if x.size == 0:
        return
    index = np.zeros(ndim, np.int64)
    yo = 0
    for start in range(0, x.size, inner):
        xr = x[start:start + inner]
        first = True  # every reduced outer index is 0: the first visit of this output window
        for d in range(ndim - 1):
            if flags[d] == 1 and index[d] != 0:
                first = False
        if inner_reduced:
            if mode == MODE_SUM:
                acc = xr[0] * 0
                for k in range(inner):
                    acc += xr[k]
                y[yo] += acc
            else:
                best = xr[0]
                for k in range(1, inner):
                    if _replaces(xr[k], best, take_max):
                        best = xr[k]
                if first or _replaces(best, y[yo], take_max):
                    y[yo] = best
        else:
            yr = y[yo:yo + inner]
            if mode == MODE_SUM:
                for k in range(inner):
                    yr[k] += xr[k]
            elif first:
                for k in range(inner):
                    yr[k] = xr[k]
            else:
                for k in range(inner):
                    if _replaces(xr[k], yr[k], take_max):
                        yr[k] = xr[k]
        _advance(index, dims, ndim - 1)
        yo = 0
        for d in range(ndim - 1):
            yo += index[d] * ystride[d]
    if mode == MODE_SUM and scale != 1.0:
        for i in range(y.size):
            y[i] *= scale


@numba.njit(cache=True)
def reduce_grad_cpu(dy, x, y, dx, dims, flags, mode, scale):
    """dx (flat, x's layout) from dy (flat, the kept groups): sums and means broadcast
    dy * scale; max and min route dy[o] to every x equal to y[o] (ties all receive it)."""
    ndim = dims.size
    inner = dims[ndim - 1]
    inner_reduced = flags[ndim - 1] == 1
    ystride = np.zeros(ndim, np.int64)
    step = 1
    for d in range(ndim - 1, -1, -1):
        if flags[d] == 0:
            ystride[d] = step
            step *= dims[d]
    if dx.size == 0:
        return
    index = np.zeros(ndim, np.int64)
    yo = 0
    for start in range(0, dx.size, inner):
        dxr = dx[start:start + inner]
        xr = x[start:start + inner]
        if inner_reduced:
            g = dy[yo]
            if mode == MODE_SUM:
                for k in range(inner):
                    dxr[k] = g * scale
            else:
                target = y[yo]
                for k in range(inner):
                    dxr[k] = g if xr[k] == target else g * 0
        else:
            dyr = dy[yo:yo + inner]
            if mode == MODE_SUM:
                for k in range(inner):
                    dxr[k] = dyr[k] * scale
            else:
                yr = y[yo:yo + inner]
                for k in range(inner):
                    dxr[k] = dyr[k] if xr[k] == yr[k] else dyr[k] * 0
        _advance(index, dims, ndim - 1)
        yo = 0
        for d in range(ndim - 1):
            yo += index[d] * ystride[d]


# Above this many input elements max/min (and ArgMax/ArgMin) use NumPy's SIMD reductions:
# reduce_cpu's NaN-aware compare loop does not vectorise (1000x1000 float32, max over rows:
# 1.98 ms vs NumPy 0.20 ms; argmax 2.4 vs 0.16 ms), while below ~1024 elements the loop's
# lower call cost wins (64 elements: 0.86 vs 0.86 us, 1024: 2.6 vs 2.3 us; measured on this machine).
# Sums stay in the loop at every size (1000x1000: 0.13-0.16 ms vs NumPy 0.15-0.20 ms).
REDUCE_VECTOR_MIN_SIZE = 1024


def reduce_vector(x, y, dims, flags, mode, scale):
    """reduce_cpu's contract with NumPy's ufunc reductions for max/min (NaN propagates the same
    way); sums go to reduce_cpu."""
    if mode == MODE_SUM or x.size == 0:
        reduce_cpu(x, y, dims, flags, mode, scale)
        return
    shape = tuple(int(n) for n in dims)
    kept = tuple(1 if f else n for n, f in zip(shape, flags))
    axes = tuple(int(a) for a in np.flatnonzero(flags))
    ufunc = np.maximum if mode == MODE_MAX else np.minimum
    ufunc.reduce(x.reshape(shape), axis=axes, keepdims=True, out=y.reshape(kept))


REDUCE_CPU = SizeSwitch(reduce_cpu, reduce_vector, REDUCE_VECTOR_MIN_SIZE)
