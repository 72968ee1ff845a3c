"""Pieces shared by the batch_norm (SpatialBN) and normalization (InstanceNorm, LayerNorm)
families, and the shape helpers lrn also uses.

Channel-statistics kernels share one view of the input, ``x4 = (G, A, C, B)``: statistics
are taken per (g, c) over the A and B axes.

* SpatialBN (per channel over the batch and space): NCHW ``(1, N, C, H*W)``, NHWC
  ``(1, N*H*W, C, 1)``.
* InstanceNorm (per sample and channel over space): NCHW ``(N, 1, C, H*W)``, NHWC
  ``(N, H*W, C, 1)``.

So one moments helper, one affine helper and one gradient kernel serve both ops and both
orders.  Statistics accumulate in float64 (two passes: mean, then squared deviations) and
outputs are written as ``(x - mean) * alpha + bias``, which keeps precision when
``|mean| >> std``.  Every kernel is dtype-generic (float32 in nets, float64 in the gradient
checks); integer inputs are rejected by ``infer``.

SpatialBN's and InstanceNorm's own CPU kernels live here too, next to the helpers they call:
``cache=True`` is only safe on kernels whose code is all in one file (docs/design.md, Cache).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nbcaffe import errors, schema

ORDERS = ("NCHW", "NHWC")


class Kernels:
    """A named set of kernels of one op (the CUDA mirror registers a set with the same names)."""

    def __init__(self, **kernels):
        self.__dict__.update(kernels)


# ------------------------------------------------------------------------ shape helpers


def check_order(order):
    if order not in ORDERS:
        raise errors.ArgumentError(f"order must be 'NCHW' or 'NHWC', got {order!r}")
    return order


def check_floating(dtype, what):
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise errors.ShapeError(f"{what} must be a floating point tensor, got {np.dtype(dtype).name}")


def channels(shape, order) -> int:
    """C of an (N, C, *spatial) or (N, *spatial, C) shape."""
    return int(shape[1] if order == "NCHW" else shape[-1])


def norm_view(shape, order, per_instance):
    """The (G, A, C, B) view described in the module docstring."""
    shape = tuple(int(d) for d in shape)
    n = shape[0]
    c = channels(shape, order)
    spatial = schema.prod(shape[2:]) if order == "NCHW" else schema.prod(shape[1:-1])
    if per_instance:
        return (n, 1, c, spatial) if order == "NCHW" else (n, spatial, c, 1)
    return (1, n, c, spatial) if order == "NCHW" else (1, n * spatial, c, 1)


def check_per_channel(shapes, names, count, x_shape, order):
    """Each named input (index, name) must hold ``count`` values (one per channel)."""
    for index, name in names:
        if schema.prod(shapes[index]) != count:
            raise errors.ShapeError(
                f"{name} {tuple(shapes[index])} must hold C={count} values (one per channel of X"
                f" {tuple(x_shape)} in {order} order)")


def bcast_shape(ndim, axis, c):
    """The shape that broadcasts a C-vector along ``axis`` of an ndim-D array."""
    shape = [1] * ndim
    shape[axis] = c
    return shape


def noop():
    """What ``bind`` returns when there is nothing to compute (empty input)."""


# ------------------------------------------------------------------------ CPU helpers


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _moments_rows(x, stats):
    """_moments for channels-last data x (G, A, C): the channel loop is the contiguous one."""
    G, A, C = x.shape
    inv = 1.0 / A if A > 0 else 0.0
    for g in range(G):
        mean = stats[0, g]
        var = stats[1, g]
        for c in range(C):
            mean[c] = 0.0
            var[c] = 0.0
        for a in range(A):
            xr = x[g, a]
            for c in range(C):
                mean[c] += xr[c]
        for c in range(C):
            mean[c] *= inv
        for a in range(A):
            xr = x[g, a]
            for c in range(C):
                d = xr[c] - mean[c]
                var[c] += d * d
        for c in range(C):
            var[c] *= inv


@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _moments(x, stats):
    """stats[0, g, c] = mean, stats[1, g, c] = biased variance of x (G, A, C, B) over A, B.

    Two passes in float64; an empty reduction gives mean 0 and variance 0.
    """
    G, A, C, B = x.shape
    if B == 1:
        _moments_rows(x.reshape(G, A, C), stats)
        return
    n = A * B
    inv = 1.0 / n if n > 0 else 0.0
    for g in range(G):
        for c in range(C):
            stats[0, g, c] = 0.0
            stats[1, g, c] = 0.0
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                s = 0.0
                for b in range(B):
                    s += xr[b]
                stats[0, g, c] += s
        for c in range(C):
            stats[0, g, c] *= inv
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                m = stats[0, g, c]
                s = 0.0
                for b in range(B):
                    d = xr[b] - m
                    s += d * d
                stats[1, g, c] += s
        for c in range(C):
            stats[1, g, c] *= inv


@numba.njit(cache=True, error_model="numpy")
def _affine(x, mean, alpha, bias, y):
    """y = (x - mean[g, c]) * alpha[g, c] + bias[c] over x, y (G, A, C, B); y may alias x."""
    G, A, C, B = x.shape
    # NOTE: LLVM's runtime overlap check sends an aliased x/y to the scalar loop (3x slower), so
    # the in-place case reads and writes one array
    same = x.ctypes.data == y.ctypes.data
    if B == 1:  # channels-last: contiguous rows of C
        x3 = x.reshape(G, A, C)
        y3 = y.reshape(G, A, C)
        for g in range(G):
            m = mean[g]
            k = alpha[g]
            for a in range(A):
                yr = y3[g, a]
                xr = yr if same else x3[g, a]
                for c in range(C):
                    yr[c] = (xr[c] - m[c]) * k[c] + bias[c]
        return
    for g in range(G):
        for a in range(A):
            for c in range(C):
                m = mean[g, c]
                k = alpha[g, c]
                t = bias[c]
                yr = y[g, a, c]
                if same:
                    for b in range(B):
                        yr[b] = (yr[b] - m) * k + t
                else:
                    xr = x[g, a, c]
                    for b in range(B):
                        yr[b] = (xr[b] - m) * k + t


# ------------------------------------------------------------------------ SpatialBN


@numba.njit(cache=True, error_model="numpy")
def spatial_bn_train_cpu(x, scale, bias, running_mean, running_var, momentum, eps, saved_mean, saved_rstd,
                         stats, alpha, y):
    """Training SpatialBN on x (1, A, C, B): batch moments into stats (2, 1, C) float64, running
    stats (C,) updated in place, saved_mean / saved_rstd (C,), y = (x - mean) * scale * rstd + bias
    (alpha (1, C) float64 scratch).  An empty batch zeroes the saved stats and leaves the
    running ones alone (Caffe2)."""
    _moments(x, stats)
    n = x.shape[1] * x.shape[3]
    for c in range(x.shape[2]):
        if n == 0:
            saved_mean[c] = 0.0
            saved_rstd[c] = 0.0
            alpha[0, c] = 0.0
            continue
        m = stats[0, 0, c]
        v = stats[1, 0, c]
        running_mean[c] = running_mean[c] * momentum + m * (1.0 - momentum)
        running_var[c] = running_var[c] * momentum + v * (1.0 - momentum)
        r = 1.0 / math.sqrt(v + eps)
        saved_mean[c] = m
        saved_rstd[c] = r
        alpha[0, c] = scale[c] * r
    _affine(x, stats[0], alpha, bias, y)


@numba.njit(cache=True, error_model="numpy")
def spatial_bn_test_cpu(x, scale, bias, mean, var, eps, stats, alpha, y):
    """Inference SpatialBN: y = (x - mean) * scale / sqrt(var + eps) + bias, per channel of
    x (1, A, C, B); stats (2, 1, C) and alpha (1, C) are float64 scratch."""
    for c in range(x.shape[2]):
        stats[0, 0, c] = mean[c]
        alpha[0, c] = scale[c] / math.sqrt(var[c] + eps)
    _affine(x, stats[0], alpha, bias, y)


# ------------------------------------------------------------------------ SpatialBN / InstanceNorm gradient



@numba.njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _grad_sums(x, dy, mean, sums):
    """sums[0, g, c] = sum dy, sums[1, g, c] = sum dy * (x - mean[g, c]) over A, B of (G, A, C, B)."""
    G, A, C, B = x.shape
    for g in range(G):
        s0 = sums[0, g]
        s1 = sums[1, g]
        for c in range(C):
            s0[c] = 0.0
            s1[c] = 0.0
        if B == 1:  # channels-last: contiguous rows of C
            x3 = x.reshape(G, A, C)
            dy3 = dy.reshape(G, A, C)
            m = mean[g]
            for a in range(A):
                xr = x3[g, a]
                dr = dy3[g, a]
                for c in range(C):
                    s0[c] += dr[c]
                    s1[c] += dr[c] * (xr[c] - m[c])
            continue
        for a in range(A):
            for c in range(C):
                xr = x[g, a, c]
                dr = dy[g, a, c]
                m = mean[g, c]
                t0 = 0.0
                t1 = 0.0
                for b in range(B):
                    t0 += dr[b]
                    t1 += dr[b] * (xr[b] - m)
                s0[c] += t0
                s1[c] += t1


@numba.njit(cache=True, error_model="numpy")
def norm_grad_cpu(x, dy, scale, mean, second, eps, frozen, sums, coef, dx, dscale, dbias):
    """Gradient of y = (x - mean) * rstd * scale[c] + bias[c] over x, dy, dx (G, A, C, B).

    mean, second: (G, C); second is rstd, or the variance when ``frozen`` (rstd = 1/sqrt(var +
    eps) and the statistics are constants: dx = scale * rstd * dy).  Otherwise the statistics
    are those of x over (A, B) and dx = scale * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
    dscale[c] = sum dy * xhat, dbias[c] = sum dy over (G, A, B).  sums (2, G, C) and coef
    (4, G, C) are float64 scratch.
    """
    G, A, C, B = x.shape
    n = A * B
    _grad_sums(x, dy, mean, sums)
    for c in range(C):
        ds = 0.0
        db = 0.0
        for g in range(G):
            r = 1.0 / math.sqrt(second[g, c] + eps) if frozen else second[g, c] * 1.0
            k = scale[c] * r
            coef[0, g, c] = k
            if frozen or n == 0:
                coef[1, g, c] = 0.0
                coef[2, g, c] = 0.0
            else:
                coef[1, g, c] = -k * r * r * sums[1, g, c] / n
                coef[2, g, c] = -k * sums[0, g, c] / n
            ds += r * sums[1, g, c]
            db += sums[0, g, c]
        dscale[c] = ds
        dbias[c] = db
    # dx = k0 * dy + k1 * (x - mean) + k2 per (g, c)
    if B == 1:
        x3 = x.reshape(G, A, C)
        dy3 = dy.reshape(G, A, C)
        dx3 = dx.reshape(G, A, C)
        for g in range(G):
            m = mean[g]
            k0 = coef[0, g]
            k1 = coef[1, g]
            k2 = coef[2, g]
            for a in range(A):
                xr = x3[g, a]
                dr = dy3[g, a]
                out = dx3[g, a]
                for c in range(C):
                    out[c] = k0[c] * dr[c] + k1[c] * (xr[c] - m[c]) + k2[c]
        return
    for g in range(G):
        for a in range(A):
            for c in range(C):
                m = mean[g, c]
                k0 = coef[0, g, c]
                k1 = coef[1, g, c]
                k2 = coef[2, g, c]
                xr = x[g, a, c]
                dr = dy[g, a, c]
                out = dx[g, a, c]
                for b in range(B):
                    out[b] = k0 * dr[b] + k1 * (xr[b] - m) + k2


# ------------------------------------------------------------------------ InstanceNorm


@numba.njit(cache=True, error_model="numpy")
def instance_norm_cpu(x, scale, bias, eps, saved_mean, saved_rstd, stats, alpha, y):
    """InstanceNorm on x (N, A, C, B): per (n, c) moments into stats (2, N, C) float64,
    saved_mean / saved_rstd (N, C), y = (x - mean) * rstd * scale[c] + bias[c] (alpha (N, C)
    float64 scratch).  y may alias x."""
    _moments(x, stats)
    for g in range(x.shape[0]):
        for c in range(x.shape[2]):
            r = 1.0 / math.sqrt(stats[1, g, c] + eps)
            saved_mean[g, c] = stats[0, g, c]
            saved_rstd[g, c] = r
            alpha[g, c] = scale[c] * r
    _affine(x, stats[0], alpha, bias, y)


@numba.njit(cache=True, error_model="numpy")
def instance_stats_cpu(x, eps, mean, rstd, stats):
    """mean, rstd (N, C) of x (N, A, C, B) over (A, B): rstd = 1 / sqrt(var + eps)."""
    _moments(x, stats)
    for g in range(x.shape[0]):
        for c in range(x.shape[2]):
            mean[g, c] = stats[0, g, c]
            rstd[g, c] = 1.0 / math.sqrt(stats[1, g, c] + eps)
