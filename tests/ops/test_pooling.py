"""Edge cases of MaxPool / AveragePool / their gradients / MaxPoolWithIndex.

Expected values: NumPy loops over output windows written here (clipping each window to the
image, divisor = image cells or the kernel volume), and torch.nn.functional
(max_pool1d/2d/3d, avg_pool1d/2d/3d, ceil_mode for Caffe's legacy mode, return_indices,
autograd) where its semantics match Caffe2's.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import autograd, core, errors
from nbcaffe.testing import check_devices
from tests.ops._util import assert_close, nchw, nhwc, op, raises
from tests.ops._util import run_named as run

torch = pytest.importorskip("torch")
F = torch.nn.functional
F32 = np.float32


def loop_pool(x, kernel, stride, heads, out, dilation=None, mode="max", include_pad=False):
    """Pooling by explicit loops over windows (NCHW, any rank); windows clipped to the image."""
    rank = x.ndim - 2
    dilation = dilation or (1,) * rank
    y = np.zeros(x.shape[:2] + tuple(out))
    for o in np.ndindex(*out):
        cells = []
        for k in np.ndindex(*kernel):
            pos = tuple(o[i] * stride[i] - heads[i] + k[i] * dilation[i] for i in range(rank))
            if all(0 <= p < x.shape[2 + i] for i, p in enumerate(pos)):
                cells.append(x[(slice(None), slice(None)) + pos].astype(np.float64))
        stack = np.stack(cells)
        if mode == "max":
            y[(slice(None), slice(None)) + o] = stack.max(axis=0)
        else:
            count = np.prod(kernel) if include_pad else len(cells)
            y[(slice(None), slice(None)) + o] = stack.sum(axis=0) / count
    return y


def torch_pool(x, mode, kernel, stride, pad, ceil_mode=False, include_pad=False, dilation=1):
    rank = x.ndim - 2
    tx = torch.from_numpy(x.astype(np.float64))
    if mode == "max":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1]
        return fn(tx, kernel, stride, pad, dilation=dilation, ceil_mode=ceil_mode).numpy()
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1]
    return fn(tx, kernel, stride, pad, ceil_mode=ceil_mode, count_include_pad=include_pad).numpy()


@st.composite
def pool_case(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    stride = [draw(st.integers(1, 3)) for _ in range(rank)]
    pad = [draw(st.integers(0, k // 2)) for k in kernel]  # torch allows pad <= kernel / 2
    sizes = [draw(st.integers(k, k + 4)) for k in kernel]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sizes)).astype(F32)
    ceil = draw(st.booleans())
    if ceil:  # Caffe's ceil mode can create windows beyond the image when stride > kernel (an error here)
        stride = [min(s, k) for s, k in zip(stride, kernel)]
    return x, kernel, stride, pad, draw(st.sampled_from(["NCHW", "NHWC"])), ceil


def _args(kernel, stride, pad, order, **extra):
    return {"kernels": list(kernel), "strides": list(stride), "pads": list(pad) * 2, "order": order, **extra}


def _pool_args(args):
    from nbcaffe.ops import _conv_pool
    from nbcaffe.schema import ArgValues

    values = ArgValues()
    values.given = set(args)
    for name, spec in _conv_pool.window_args("pool").items():
        values[name] = spec.default
    values.update(args)
    return values


class TestForward:
    @settings(max_examples=40)
    @given(case=pool_case())
    def test_matches_torch(self, case):
        x, kernel, stride, pad, order, ceil = case
        t = (lambda a: a) if order == "NCHW" else nhwc
        back = (lambda a: a) if order == "NCHW" else nchw
        legacy = {"legacy_pad": 3} if ceil else {}
        (y,) = run("MaxPool", [t(x)], **_args(kernel, stride, pad, order, **legacy))
        assert_close(back(y), torch_pool(x, "max", kernel, stride, pad, ceil), rtol=0, atol=0)
        (y,) = run("AveragePool", [t(x)], **_args(kernel, stride, pad, order, **legacy))
        assert_close(back(y), torch_pool(x, "avg", kernel, stride, pad, ceil), rtol=1e-5, atol=1e-6)
        if not ceil:  # Caffe2 divides Caffe's extra ceil-mode window by the full kernel, torch clips it
            (y,) = run("AveragePool", [t(x)], **_args(kernel, stride, pad, order, count_include_pad=1))
            assert_close(back(y), torch_pool(x, "avg", kernel, stride, pad, include_pad=True), rtol=1e-5,
                         atol=1e-6)

    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_asymmetric_pads_dilation_and_divisor(self, order):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2, 3, 7, 6)).astype(F32)
        t = (lambda a: a) if order == "NCHW" else nhwc
        back = (lambda a: a) if order == "NCHW" else nchw
        # pads t=2, l=0, b=1, r=2; out = floor((7 + 3 - 3) / 2) + 1 = 4, floor((6 + 2 - 5) / 1) + 1 = 4
        args = {"kernel_h": 3, "kernel_w": 3, "stride_h": 2, "stride_w": 1, "pad_t": 2, "pad_l": 0, "pad_b": 1,
                "pad_r": 2, "dilation_h": 1, "dilation_w": 2, "order": order}
        for mode, op_type in (("max", "MaxPool"), ("avg", "AveragePool")):
            (y,) = run(op_type, [t(x)], **args)
            expected = loop_pool(x, (3, 3), (2, 1), (2, 0), (4, 4), (1, 2), mode)
            assert_close(back(y), expected, rtol=1e-5, atol=1e-6)
        (y,) = run("AveragePool", [t(x)], count_include_pad=1, **args)
        assert_close(back(y), loop_pool(x, (3, 3), (2, 1), (2, 0), (4, 4), (1, 2), "avg", True), rtol=1e-5,
                     atol=1e-6)

    def test_legacy_ceil_mode_window_is_clipped(self):
        # in=6, k=3, s=2, pad=1: Caffe's ceil mode gives 4 windows, the last one starts at cell 5
        x = np.arange(36, dtype=F32).reshape(1, 1, 6, 6)
        (y,) = run("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=3)
        assert y.shape == (1, 1, 4, 4)
        assert_close(y, loop_pool(x, (3, 3), (2, 2), (1, 1), (4, 4), mode="avg"))
        assert y[0, 0, 3, 3] == x[0, 0, 5, 5]  # the last window holds one image cell
        (y,) = run("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=3, count_include_pad=1)
        assert y[0, 0, 3, 3] == pytest.approx(x[0, 0, 5, 5] / 9)  # Caffe2: the full kernel volume

    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_global_pooling(self, order):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((2, 3, 4, 5, 2)).astype(F32)
        t = (lambda a: a) if order == "NCHW" else nhwc
        back = (lambda a: a) if order == "NCHW" else nchw
        (y,) = run("MaxPool3D", [t(x)], global_pooling=1, order=order)
        assert_close(back(y), x.max(axis=(2, 3, 4), keepdims=True), rtol=0, atol=0)
        (y,) = run("AveragePool", [t(x)], global_pooling=1, order=order, count_include_pad=1)
        assert_close(back(y), x.astype(np.float64).mean(axis=(2, 3, 4), keepdims=True), rtol=1e-5, atol=1e-6)

    def test_ties_and_nan(self):
        x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                        [3.0, 2.0, -1.0, 5.0],
                        [np.nan, 0.0, 7.0, 7.0],
                        [4.0, np.nan, 7.0, 1.0]]]], F32)
        y, index = run("MaxPoolWithIndex", [x], 2, kernel=2, stride=2)
        assert y[0, 0, 0, 0] == 3.0 and index[0] == 1  # three 3s: the first in row-major order
        assert y[0, 0, 0, 1] == 5.0 and index[1] == 7
        assert np.isnan(y[0, 0, 1, 0]) and index[2] == 8  # NaN propagates; the first NaN wins
        assert y[0, 0, 1, 1] == 7.0 and index[3] == 10
        (ym,) = run("MaxPool", [x], kernel=2, stride=2)
        np.testing.assert_array_equal(ym, y)
        dy = np.array([[[[10.0, 20.0], [30.0, 40.0]]]], F32)
        (dx,) = run("MaxPoolGradient", [x, y, dy], kernel=2, stride=2)
        expected = np.zeros_like(x)
        expected.reshape(-1)[[1, 7, 8, 10]] = [10.0, 20.0, 30.0, 40.0]
        np.testing.assert_array_equal(dx, expected)
        (dxi,) = run("MaxPoolWithIndexGradient", [x, dy, index], kernel=2, stride=2)
        np.testing.assert_array_equal(dxi, expected)


    @pytest.mark.parametrize("shape", [(3, 4, 8, 10), (2, 3, 9, 11), (1, 2, 2, 2), (2, 2, 6, 40)])
    @pytest.mark.parametrize("dtype", [F32, np.float64])
    def test_2x2_rows_with_nan_inf_and_ties(self, shape, dtype):
        """The 2x2/2 kernels (row passes; gradient rows with ties or non-finite values redone
        window by window) against a loop over windows, with every kind of awkward window."""
        rng = np.random.default_rng(12)
        x = rng.standard_normal(shape).astype(dtype)
        flat = x.reshape(-1)
        pick = rng.choice(flat.size, size=max(4, flat.size // 12), replace=False)
        quarter = len(pick) // 4
        flat[pick[:quarter]] = np.nan
        flat[pick[quarter:2 * quarter]] = 1.0  # ties
        flat[pick[2 * quarter:3 * quarter]] = np.inf
        flat[pick[3 * quarter:]] = -np.inf
        x[0, 0, :2, :2] = -np.inf  # a window of equal -inf: the first cell wins
        n, c, h, w = shape
        dy = rng.standard_normal((n, c, h // 2, w // 2)).astype(dtype)
        dy.reshape(-1)[::7] = np.inf  # dY reaches only its winner: no inf * 0
        y_expected = np.empty(dy.shape, dtype)
        dx_expected = np.zeros_like(x)
        for i, j, oh, ow in np.ndindex(*dy.shape):
            cells = [(2 * oh + a, 2 * ow + b) for a in (0, 1) for b in (0, 1)]
            values = [x[i, j, r, q] for r, q in cells]
            nan = [k for k, v in enumerate(values) if np.isnan(v)]
            best = nan[0] if nan else int(np.argmax(values))  # argmax: the first maximum
            y_expected[i, j, oh, ow] = values[best]
            dx_expected[(i, j) + cells[best]] = dy[i, j, oh, ow]
        (y,) = run("MaxPool", [x], kernel=2, stride=2)
        np.testing.assert_array_equal(y, y_expected)
        (dx,) = run("MaxPoolGradient", [x, y, dy], kernel=2, stride=2)
        np.testing.assert_array_equal(dx, dx_expected)


    @pytest.mark.parametrize("shape,args,out", [
        ((2, 3, 13, 13), {"kernel": 3, "stride": 2, "legacy_pad": 3}, (6, 6)),  # SqueezeNet's pools
        ((1, 2, 12, 11), {"kernel": 3, "stride": 2, "pad": 1, "legacy_pad": 3}, (7, 6)),  # ResNet stem: ceil, pad
        ((2, 2, 7, 9), {"kernel": 3, "stride": 1, "pad": 1}, (7, 9)),  # Inception's 3x3/1
        ((1, 2, 8, 9), {"kernels": [3, 2], "strides": [3, 2], "pads": [2, 1, 0, 1]}, (3, 5)),  # asymmetric
        ((1, 1, 5, 4), {"kernel": 4, "stride": 1}, (2, 1)),  # tiled-free, one output column
    ])
    @pytest.mark.parametrize("dtype", [F32, np.float64])
    def test_row_pass_pooling(self, shape, args, out, dtype):
        """The separable row-pass kernels (2-D NCHW, no dilation) against a loop over windows,
        with NaN, +-inf and ties in the input of the max."""
        from nbcaffe.ops import _conv_pool, pooling

        rng = np.random.default_rng(13)
        x = rng.standard_normal(shape).astype(dtype)
        flat = x.reshape(-1)
        pick = rng.choice(flat.size, size=max(4, flat.size // 10), replace=False)
        flat[pick[0::4]] = np.nan
        flat[pick[1::4]] = 1.0
        flat[pick[2::4]] = np.inf
        flat[pick[3::4]] = -np.inf
        geo = pooling.pool_geometry(_conv_pool.parse_window(_pool_args(args), "test", "pool"), shape)
        plan = pooling._plan(geo)
        assert pooling.separable(plan[3:]) and not pooling.tiled(plan[3:])
        (y,) = run("MaxPool", [x], **args)
        assert y.shape[2:] == out
        heads = list(geo.pad_head)
        expected = loop_pool(x, geo.kernel, geo.stride, heads, out)
        np.testing.assert_array_equal(y, expected.astype(dtype))
        x = rng.standard_normal(shape).astype(dtype)  # average pooling takes the same row passes
        for include_pad in (0, 1):
            (y,) = run("AveragePool", [x], count_include_pad=include_pad, **args)
            expected = loop_pool(x, geo.kernel, geo.stride, heads, out, mode="avg", include_pad=include_pad)
            assert_close(y, expected, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-6 if dtype == F32 else 1e-12)


class TestGradients:
    @settings(max_examples=30)
    @given(case=pool_case())
    def test_match_torch_autograd(self, case):
        x, kernel, stride, pad, order, include_pad = case
        t = (lambda a: a) if order == "NCHW" else nhwc
        back = (lambda a: a) if order == "NCHW" else nchw
        rank = x.ndim - 2
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        for mode, op_type in (("max", "MaxPool"), ("avg", "AveragePool")):
            fn = {"max": (F.max_pool1d, F.max_pool2d, F.max_pool3d),
                  "avg": (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)}[mode][rank - 1]
            extra = {"count_include_pad": include_pad} if mode == "avg" else {}
            ty = fn(tx, kernel, stride, pad, **extra)
            dy = np.random.default_rng(3).standard_normal(tuple(ty.shape)).astype(F32)
            (gx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy.astype(np.float64)))
            args = _args(kernel, stride, pad, order, **({"count_include_pad": int(include_pad)} if extra else {}))
            (y,) = run(op_type, [t(x)], **args)
            (dx,) = run(op_type + "Gradient", [t(x), y, t(dy)], **args)
            assert_close(back(dx), gx.numpy(), rtol=1e-5, atol=1e-5)
            if mode == "max" and order == "NCHW" and rank == 2:
                y2, index = run("MaxPoolWithIndex", [x], 2, **args)
                _, t_index = F.max_pool2d(tx, kernel, stride, pad, return_indices=True)
                np.testing.assert_array_equal(index, t_index.numpy().reshape(-1))
                (dxi,) = run("MaxPoolWithIndexGradient", [x, dy, index], **args)
                assert_close(dxi, gx.numpy(), rtol=1e-5, atol=1e-5)

    def test_makers_follow_caffe2(self):
        for op_type in ("MaxPool", "AveragePool2D", "MaxPool3D"):
            pool = core.CreateOperator(op_type, ["x"], ["y"], kernel=2)
            ops, g_in = autograd.GradientRegistry.GetGradientForOp(pool, ["y_grad"])
            assert [o.type for o in ops] == [op_type + "Gradient"]
            assert list(ops[0].input) == ["x", "y", "y_grad"] and g_in == ["x_grad"]
        pool = core.CreateOperator("MaxPoolWithIndex", ["x"], ["y", "idx"], kernel=2)
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(pool, ["y_grad", None])
        assert ops[0].type == "MaxPoolWithIndexGradient" and list(ops[0].input) == ["x", "y_grad", "idx"]


class TestLargeInputs:
    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_split_across_threads(self, order):
        # >= pooling.PARALLEL_MIN elements: the work is split into chunks of planes / images
        rng = np.random.default_rng(5)
        x = rng.standard_normal((4, 5, 40, 41)).astype(F32)
        t = (lambda a: a) if order == "NCHW" else nhwc
        back = (lambda a: a) if order == "NCHW" else nchw
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        ty, t_index = F.max_pool2d(tx, 3, 2, 1, return_indices=True)
        dy = rng.standard_normal(tuple(ty.shape)).astype(F32)
        (gx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy.astype(np.float64)))
        args = {"kernel": 3, "stride": 2, "pad": 1, "order": order}
        y, index = run("MaxPoolWithIndex", [t(x)], 2, **args)
        assert_close(back(y), ty.detach().numpy(), rtol=0, atol=0)
        if order == "NCHW":
            np.testing.assert_array_equal(index, t_index.numpy().reshape(-1))
        (dx,) = run("MaxPoolGradient", [t(x), y, t(dy)], **args)
        assert_close(back(dx), gx.numpy(), rtol=1e-5, atol=1e-5)
        (dx,) = run("MaxPoolWithIndexGradient", [t(x), t(dy), index], **args)
        assert_close(back(dx), gx.numpy(), rtol=1e-5, atol=1e-5)
        ta = F.avg_pool2d(tx, 3, 2, 1, count_include_pad=False)
        (ga,) = torch.autograd.grad(ta, tx, torch.from_numpy(dy.astype(np.float64)))
        (ya,) = run("AveragePool", [t(x)], **args)
        assert_close(back(ya), ta.detach().numpy(), rtol=1e-5, atol=1e-6)
        (dxa,) = run("AveragePoolGradient", [t(x), ya, t(dy)], **args)
        assert_close(back(dxa), ga.numpy(), rtol=1e-5, atol=1e-6)


class TestErrors:
    def test_window_of_padding_only(self):
        x = np.zeros((1, 1, 4, 4), F32)
        raises(errors.ShapeError, op("MaxPool", ["x"], ["y"], kernel=2, pad=2), [x], "covers only padding")
        raises(errors.ShapeError, op("AveragePool", ["x"], ["y"], kernel=2, pads=[0, 0, 3, 0]), [x],
               "covers only padding")
        # Caffe's ceil mode with stride > kernel and no padding: the last window starts past the
        # image (Caffe2 output -FLT_MAX / NaN there)
        raises(errors.ShapeError, op("MaxPool", ["x"], ["y"], kernel=1, stride=3, legacy_pad=3),
               [np.zeros((1, 1, 2, 2), F32)], "covers only padding", "legacy_pad=CAFFE_LEGACY_POOLING")

    @pytest.mark.parametrize("args,fragment", [
        ({"global_pooling": 1, "stride": 2}, "global_pooling=1"),
        ({"global_pooling": 1, "pad": 1}, "global_pooling=1"),
        ({"kernel": 2, "count_include_pad": 1}, "unknown argument 'count_include_pad'"),
        ({"kernels": [2, 2], "pads": [1, 1]}, "disagree"),
    ])
    def test_argument_errors(self, args, fragment):
        with pytest.raises(errors.ArgumentError) as info:
            run("MaxPool", [np.zeros((1, 1, 4, 4), F32)], **args)
        assert fragment in str(info.value)

    def test_gradient_shapes_checked(self):
        x = np.zeros((1, 2, 4, 4), F32)
        y = np.zeros((1, 2, 2, 2), F32)
        raises(errors.ShapeError, op("MaxPoolGradient", ["x", "y", "dy"], ["dx"], kernel=2, stride=2),
               [x, y, np.zeros((1, 2, 3, 3), F32)], "dY (1, 2, 3, 3)", "(1, 2, 2, 2)")
        raises(errors.ShapeError, op("MaxPoolWithIndexGradient", ["x", "dy", "i"], ["dx"], kernel=2, stride=2),
               [x, y, np.zeros(8, np.int64)], "int32")

    def test_too_many_spatial_dims(self):
        raises(errors.ShapeError, op("MaxPool", ["x"], ["y"], kernel=1), [np.zeros((1, 1, 2, 2, 2, 2), F32)],
               "at most 3")


@pytest.mark.cuda
class TestPoolingCuda:
    def test_matches_cpu(self, dc):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((2, 3, 5, 6)).astype(F32)
        x[0, 0, 0, :2] = 2.5  # a tie
        x[1, 2, 3, 3] = np.nan
        for order in ("NCHW", "NHWC"):
            t = (lambda a: a) if order == "NCHW" else nhwc
            for args in ({"kernel": 2, "stride": 2}, {"kernel": 3, "stride": 2, "pad": 1, "legacy_pad": 3},
                         {"kernels": [2, 3], "dilations": [2, 1], "pads": [1, 0, 0, 1]}):
                y, index = run("MaxPoolWithIndex", [t(x)], 2, order=order, **args)
                dy = rng.standard_normal(y.shape).astype(F32)
                check_devices(dc, op("MaxPoolWithIndex", ["x"], ["y", "i"], order=order, **args), [t(x)])
                check_devices(dc, op("MaxPoolGradient", ["x", "y", "dy"], ["dx"], order=order, **args), [t(x), y, dy])
                check_devices(dc, op("MaxPoolWithIndexGradient", ["x", "dy", "i"], ["dx"], order=order, **args),
                              [t(x), dy, index])
                xa = np.nan_to_num(t(x))
                check_devices(dc, op("AveragePool", ["x"], ["y"], order=order, count_include_pad=1, **args), [xa])
                check_devices(dc, op("AveragePoolGradient", ["x", "y", "dy"], ["dx"], order=order, **args),
                              [xa, y, dy])
