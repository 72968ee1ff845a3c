"""RoIPool / RoIPoolGradient against a plain-Python Fast R-CNN loop written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbcaffe import autograd, errors
from tests.ops._util import assert_close, op, raises, run

F32 = np.float32
FLT_LOWEST = float(np.finfo(F32).min)


def c_round(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def fast_rcnn_pool(x, rois, ph_n, pw_n, scale):
    """Caffe's ROIPoolingLayer::Forward_cpu written as loops (float32 bin arithmetic)."""
    _, channels, height, width = x.shape
    y = np.zeros((len(rois), channels, ph_n, pw_n), np.float64)
    arg = np.full(y.shape, -1)
    s = F32(scale)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        sw, sh, ew, eh = (c_round(float(F32(roi[k]) * s)) for k in (1, 2, 3, 4))
        bh = F32(max(eh - sh + 1, 1)) / F32(ph_n)
        bw = F32(max(ew - sw + 1, 1)) / F32(pw_n)
        for c in range(channels):
            for ph in range(ph_n):
                for pw in range(pw_n):
                    h0 = min(max(math.floor(F32(ph) * bh) + sh, 0), height)
                    h1 = min(max(math.ceil(F32(ph + 1) * bh) + sh, 0), height)
                    w0 = min(max(math.floor(F32(pw) * bw) + sw, 0), width)
                    w1 = min(max(math.ceil(F32(pw + 1) * bw) + sw, 0), width)
                    best = 0.0 if (h1 <= h0 or w1 <= w0) else FLT_LOWEST
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if x[b, c, h, w] > best:
                                best = x[b, c, h, w]
                                arg[r, c, ph, pw] = h * width + w
                    y[r, c, ph, pw] = best
    return y, arg


def sample(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 9, 11)).astype(F32)
    rois = np.array([[0, 0, 0, 10, 8], [1, 2.5, 1.5, 7.49, 6.5], [1, -4, -4, 3, 2], [0, 8, 7, 2, 1],
                     [1, 0, 0, 20, 20], [0, 3, 3, 3, 3]], F32)
    return x, rois


@pytest.mark.parametrize("pooled,scale", [((2, 2), 1.0), ((3, 4), 0.5), ((7, 7), 1.0), ((1, 1), 0.0625)])
def test_matches_fast_rcnn_loops(pooled, scale):
    x, rois = sample()
    y, arg = run(op("RoIPool", ["X", "R"], ["Y", "A"], pooled_h=pooled[0], pooled_w=pooled[1],
                    spatial_scale=scale), [x, rois])
    want_y, want_arg = fast_rcnn_pool(x, rois, pooled[0], pooled[1], scale)
    assert_close(y, want_y, dtype=F32)
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(arg, want_arg)


def test_test_mode_has_one_output_and_nan_never_wins():
    x, rois = sample(1)
    x[0, 0, 0:2, 0:2] = np.nan
    x[0, 1] = np.nan  # a whole plane of NaN: every bin keeps -FLT_MAX, as in Caffe
    (y,) = run(op("RoIPool", ["X", "R"], ["Y"], is_test=1, pooled_h=2, pooled_w=2), [x, rois[:1]])
    want, _ = fast_rcnn_pool(x, rois[:1], 2, 2, 1.0)
    assert_close(y, want)
    assert np.all(y[0, 1] == FLT_LOWEST)


def test_bad_batch_index_and_shapes_raise():
    x, rois = sample()
    bad = rois.copy()
    bad[3, 0] = 2
    raises(errors.ShapeError, op("RoIPool", ["X", "R"], ["Y", "A"]), [x, bad], "RoI 3", "outside [0, 2)")
    raises(errors.ShapeError, op("RoIPool", ["X", "R"], ["Y", "A"]), [x, rois[:, :4]], "(num_rois, 5)")
    raises(errors.SchemaError, op("RoIPool", ["X", "R"], ["Y", "A"], is_test=1), [x, rois], "is_test=1")
    raises(errors.ArgumentError, op("RoIPool", ["X", "R"], ["Y"], is_test=1, pooled_h=0), [x, rois], "pooled_h")


def test_gradient_sums_over_overlapping_rois():
    x, rois = sample(2)
    rois = np.concatenate([rois, rois[:2]])  # the same bins twice: every maximum collects two dY
    fwd = op("RoIPool", ["X", "R"], ["Y", "A"], pooled_h=3, pooled_w=2)
    y, arg = run(fwd, [x, rois])
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(F32)
    grads, _ = autograd.GradientRegistry.GetGradientForOp(fwd, ["Y_grad"])
    (dx,) = run(grads[0], [x, rois, arg, dy])
    want = np.zeros(x.shape)
    for r in range(len(rois)):
        for c in range(x.shape[1]):
            for k, g in zip(arg[r, c].ravel(), dy[r, c].ravel()):
                if k >= 0:
                    want[int(rois[r, 0]), c].flat[k] += g
    assert_close(dx, want, rtol=1e-5, atol=1e-6)


def test_gradient_needs_argmaxes():
    with pytest.raises(autograd.GradientError, match="argmaxes"):
        autograd.GradientRegistry.GetGradientForOp(op("RoIPool", ["X", "R"], ["Y"], is_test=1), ["Y_grad"])


@pytest.mark.cuda
def test_cuda_matches_cpu(dc):
    x, rois = sample(4)
    rois = np.concatenate([rois, rois[1:3]])
    fwd = op("RoIPool", ["X", "R"], ["Y", "A"], pooled_h=2, pooled_w=3, spatial_scale=0.75)
    (cpu_y, cpu_a), (cuda_y, cuda_a) = (run(fwd, [x, rois], d) for d in dc)
    assert_close(cuda_y, cpu_y)
    np.testing.assert_array_equal(cuda_a, cpu_a)
    dy = np.random.default_rng(5).standard_normal(cpu_y.shape).astype(F32)
    grad = op("RoIPoolGradient", ["X", "R", "A", "dY"], ["dX"], pooled_h=2, pooled_w=3)
    cpu_dx, cuda_dx = (run(grad, [x, rois, cpu_a, dy], d)[0] for d in dc)
    assert_close(cuda_dx, cpu_dx, rtol=1e-5, atol=1e-6)
    bad = rois.copy()
    bad[0, 0] = -1
    raises(errors.ShapeError, fwd, [x, bad], "RoI 0", device_option=dc[1])
