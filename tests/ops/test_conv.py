"""Edge cases of Conv / ConvGradient (ConvTranspose: test_conv_transpose.py; CPU vs CUDA for both here).

Expected values come from two sources written here, never from the op's own reference:
a direct convolution in NumPy (explicit loops over output positions and taps) and
torch.nn.functional (conv1d/2d/3d, conv_transpose2d and autograd) where its semantics match
Caffe2's (asymmetric pads are given to torch as an explicit zero padding of the input).
Output sizes are checked against Caffe2's ComputeSizeAndPad rules rewritten in the test.
"""

from __future__ import annotations

import contextlib
import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import autograd, core, errors, workspace
from nbcaffe.ops import _conv_pool
from nbcaffe.testing import check_devices
from tests.ops._util import assert_close, nchw, nhwc, op, raises
from tests.ops._util import run_named as run

torch = pytest.importorskip("torch")
F = torch.nn.functional
F32 = np.float32


def direct_conv(x, w, b, stride, pads, dilation, group):
    """Y by explicit loops: x (N, C, *sp), w (M, C/G, *k), pads = heads + tails (NCHW, float64)."""
    rank = x.ndim - 2
    n, c = x.shape[:2]
    m = w.shape[0]
    cg, mg = c // group, m // group
    heads, tails = pads[:rank], pads[rank:]
    out_sp = [(x.shape[2 + i] + heads[i] + tails[i] - dilation[i] * (w.shape[2 + i] - 1) - 1) // stride[i] + 1
              for i in range(rank)]
    y = np.zeros((n, m, *out_sp))
    for o in np.ndindex(*out_sp):
        for k in np.ndindex(*w.shape[2:]):
            pos = [o[i] * stride[i] - heads[i] + k[i] * dilation[i] for i in range(rank)]
            if any(p < 0 or p >= x.shape[2 + i] for i, p in enumerate(pos)):
                continue
            for g in range(group):
                patch = x[(slice(None), slice(g * cg, (g + 1) * cg)) + tuple(pos)].astype(np.float64)  # (N, Cg)
                y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] += patch @ w[(slice(g * mg, (g + 1) * mg),
                                                                              slice(None)) + k].T
    if b is not None:
        y += b.reshape((1, m) + (1,) * rank)
    return y


def torch_conv(x, w, b, stride, pads, dilation, group):
    """torch.nn.functional.conv{1,2,3}d with explicit (possibly asymmetric) zero padding."""
    rank = x.ndim - 2
    pad_arg = []
    for i in reversed(range(rank)):
        pad_arg += [pads[i], pads[rank + i]]
    tx = F.pad(torch.from_numpy(x.astype(np.float64)), pad_arg)
    fn = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    tb = None if b is None else torch.from_numpy(b.astype(np.float64))
    return fn(tx, torch.from_numpy(w.astype(np.float64)), tb, stride=stride, dilation=dilation, groups=group).numpy()


# ----------------------------------------------------------------------------------- geometry


def caffe2_size(size, k, s, d, head, tail, legacy):
    """Caffe2's ComputeSizeAndPad, written out again: (out, head, tail)."""
    dk = d * (k - 1) + 1
    if legacy == 0:
        return (size + head + tail - dk) // s + 1, head, tail
    if legacy == 1:
        return (size - dk) // s + 1, 0, 0
    if legacy == 2:
        target = -(-size // s)
        needed = (target - 1) * s + k - size
        h = int(needed / 2)
        return int((size + needed - dk) / s) + 1, h, needed - h
    out = math.ceil((size + 2 * head - k) / s) + 1
    if head > 0 and (out - 1) * s >= size + head:
        out -= 1
    standard = int((size + 2 * head - k) / s + 1)
    return out, head, head + s * (out - standard)


class TestGeometry:
    @given(size=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), pad=st.integers(0, 3),
           legacy=st.sampled_from([0, 1, 2, 3]))
    def test_output_sizes_follow_compute_size_and_pad(self, size, k, s, pad, legacy):
        args = {"kernel": k, "stride": s, "legacy_pad": legacy}
        if legacy in (0, 3):
            args["pad"] = pad
        expected = caffe2_size(size, k, s, 1, pad, pad, legacy)
        x = np.zeros((1, 1, size, size), F32)
        w = np.ones((1, 1, k, k), F32)
        if expected[0] < 1 or (legacy == 0 and size + 2 * pad < k) or (legacy == 1 and size < k):
            with pytest.raises(errors.ShapeError):
                run("Conv", [x, w], **args)
            return
        (y,) = run("Conv", [x, w], **args)
        assert y.shape == (1, 1, expected[0], expected[0])

    def test_legacy_pooling_mode_adds_tail_padding_like_caffe(self):
        # in=6, k=3, s=2, pad=1: Caffe's ceil mode gives 4 outputs (floor mode: 3), the extra
        # window starting at 5 reads image cells 5 and the tail padding
        geo = _conv_pool.resolve(_window(kernel=3, stride=2, pad=1, legacy_pad=3), (1, 1, 6, 6))
        assert geo.out_sp == (4, 4) and geo.pad_head == (1, 1) and geo.pad_tail == (3, 3)
        # with pad > 0 Caffe drops a last window that would start in the padding: in=5, k=2, s=2, pad=1
        geo = _conv_pool.resolve(_window(kernel=2, stride=2, pad=1, legacy_pad=3), (1, 1, 5, 5))
        assert geo.out_sp == (3, 3) and geo.pad_tail == (1, 1)

    def test_same_padding_splits_head_small_tail_large(self):
        geo = _conv_pool.resolve(_window(kernel=4, stride=1, legacy_pad=2), (1, 1, 7, 7))
        assert geo.out_sp == (7, 7) and geo.pad_head == (1, 1) and geo.pad_tail == (2, 2)
        # stride 3 over 5 with a 1-wide kernel needs -1 padding: C division keeps the head at 0
        geo = _conv_pool.resolve(_window(kernel=1, stride=3, legacy_pad=2), (1, 1, 5, 5))
        assert geo.out_sp == (2, 2) and geo.pad_head == (0, 0) and geo.pad_tail == (-1, -1)

    def test_pads_order_is_heads_then_tails(self):
        x = np.random.default_rng(0).standard_normal((1, 1, 4, 5)).astype(F32)
        w = np.ones((1, 1, 1, 1), F32)
        (y,) = run("Conv", [x, w], kernel=1, pads=[1, 2, 3, 0])  # t, l, b, r
        assert y.shape == (1, 1, 4 + 1 + 3, 5 + 2 + 0)
        assert_close(y[0, 0, 1:5, 2:], x[0, 0])
        assert not y[0, 0, 0].any() and not y[0, 0, 5:].any() and not y[0, 0, :, :2].any()


def _conv_args(args):
    from nbcaffe.schema import ArgValues

    values = ArgValues()
    values.given = set(args)
    for name, spec in _conv_pool.window_args("conv").items():
        values[name] = spec.default
    values.update(args)
    return values


def _window(**args):
    from nbcaffe.schema import ArgValues

    values = ArgValues()
    values.given = set(args)
    for name, spec in _conv_pool.window_args("pool").items():
        values[name] = spec.default
    values.update(args)
    return _conv_pool.parse_window(values, "test", "pool")


# ----------------------------------------------------------------------------------- forward


@st.composite
def conv_case(draw, rank=None, order=None):
    rank = rank or draw(st.sampled_from([1, 2, 2, 3]))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    stride = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    sizes = []
    for i in range(rank):
        low = max(1, dilation[i] * (kernel[i] - 1) + 1 - pads[i] - pads[rank + i])
        sizes.append(draw(st.integers(low, low + 5)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((n, cg * group, *sizes)).astype(F32)
    w = rng.standard_normal((mg * group, cg, *kernel)).astype(F32)
    b = rng.standard_normal(mg * group).astype(F32) if draw(st.booleans()) else None
    order = order or draw(st.sampled_from(["NCHW", "NHWC"]))
    return x, w, b, stride, pads, dilation, group, order


@contextlib.contextmanager
def strategies(direct):
    """direct=False: the GEMM paths only (small NCHW unit-stride shapes otherwise take the direct
    kernels, so the property tests run both)."""
    from nbcaffe.ops import _conv_cpu

    saved = _conv_cpu.DIRECT_MAX_DEPTH
    if not direct:
        _conv_cpu.DIRECT_MAX_DEPTH = 0
    try:
        yield
    finally:
        _conv_cpu.DIRECT_MAX_DEPTH = saved


def conv_args(kernel_shape, stride, pads, dilation, group, order):
    return {"kernels": list(kernel_shape), "strides": list(stride), "pads": list(pads), "dilations": list(dilation),
            "group": group, "order": order}


class TestConv:
    @pytest.mark.parametrize("direct", [True, False], ids=["direct", "gemm"])
    @settings(max_examples=40)
    @given(case=conv_case())
    def test_matches_torch(self, direct, case):
        x, w, b, stride, pads, dilation, group, order = case
        expected = torch_conv(x, w, b, stride, pads, dilation, group)
        inputs = [x, w] + ([b] if b is not None else [])
        if order == "NHWC":
            inputs = [nhwc(x), nhwc(w)] + inputs[2:]
        with strategies(direct):
            (y,) = run("Conv", inputs, **conv_args(w.shape[2:], stride, pads, dilation, group, order))
        assert_close(y if order == "NCHW" else nchw(y), expected, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("order", ["NCHW", "NHWC"])
    def test_matches_direct_loops(self, order):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 4, 6, 7)).astype(F32)
        w = rng.standard_normal((6, 2, 3, 2)).astype(F32)
        b = rng.standard_normal(6).astype(F32)
        expected = direct_conv(x, w, b, (2, 1), (1, 0, 2, 1), (1, 2), 2)
        inputs = [x, w, b] if order == "NCHW" else [nhwc(x), nhwc(w), b]
        (y,) = run("Conv", inputs, kernel_h=3, kernel_w=2, stride_h=2, stride_w=1, pad_t=1, pad_l=0, pad_b=2,
                   pad_r=1, dilation_h=1, dilation_w=2, group=2, order=order)
        assert_close(y if order == "NCHW" else nchw(y), expected, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("shape,k,pad", [((1, 8, 40, 33), 3, 1),  # one image: split into row blocks
                                             ((5, 3, 9, 9), 3, 1),  # several row-shift tasks
                                             ((9, 2, 6, 6), 3, 0),  # im2col chunks of images
                                             ((3, 6, 7, 5), 1, 0)])  # 1x1
    def test_task_splits_match_direct_loops(self, shape, k, pad):
        rng = np.random.default_rng(5)
        x = rng.standard_normal(shape).astype(F32)
        w = rng.standard_normal((4, shape[1], k, k)).astype(F32)
        b = rng.standard_normal(4).astype(F32)
        for stride in (1, 2):
            expected = direct_conv(x, w, b, (stride, stride), (pad,) * 4, (1, 1), 1)
            (y,) = run("Conv", [x, w, b], kernel=k, pad=pad, stride=stride)
            assert_close(y, expected, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("x_shape,w_shape,args", [
        ((2, 16, 20, 22), (12, 16, 3, 3), {"kernel": 3, "pad": 1}),  # the row-shift path at its defaults
        ((2, 4, 7, 9), (6, 2, 3, 2), {"kernels": [3, 2], "group": 2, "dilations": [2, 1], "pads": [2, 1, 1, 0]}),
        ((1, 3, 9, 8), (4, 3, 2, 3), {"kernels": [2, 3], "legacy_pad": 2}),  # SAME: a negative tail pad crops
        ((3, 2, 6, 5), (2, 2, 3, 3), {"kernel": 3, "pad": 3}),  # pads beyond the kernel: dX takes col2im
    ])
    def test_row_shift_path(self, monkeypatch, x_shape, w_shape, args):
        from nbcaffe.ops import _conv_common
        from nbcaffe.ops import _conv_cpu as conv_module

        rng = np.random.default_rng(14)
        x = rng.standard_normal(x_shape).astype(F32)
        w = rng.standard_normal(w_shape).astype(F32)
        b = rng.standard_normal(w_shape[0]).astype(F32)
        if x_shape[1] < 16:  # force the path on small shapes; several row blocks per image
            monkeypatch.setattr(conv_module, "ROWSHIFT_MAX_WASTE", 100.0)
            monkeypatch.setattr(conv_module, "ROWSHIFT_MIN_DEPTH", 1)
            monkeypatch.setattr(conv_module, "TASK_BYTES", 600)
            monkeypatch.setattr(conv_module, "DIRECT_MAX_DEPTH", 0)
            monkeypatch.setattr(conv_module, "ROWSHIFT_MIN_SPLIT_POSITIONS", 0)
        window = _conv_pool.parse_window(_conv_args(args), "test", "conv")
        geo, m = _conv_common.filter_geometry(window, x_shape, w_shape, args.get("group", 1))
        plan, _ = conv_module.forward_plan(geo, args.get("group", 1), 1, m, 4)
        assert plan[3] == conv_module.FWD_ROWSHIFT
        heads, tails = list(geo.pad_head), list(geo.pad_tail)
        stride, dilation = list(geo.stride), list(geo.dilation)
        (y,) = run("Conv", [x, w, b], **args)
        expected = torch_conv(np.pad(x, [(0, 0), (0, 0)] + [(0, 0)] * 2)[(slice(None),) * 2 + tuple(
            slice(max(0, -h), x.shape[2 + i] - max(0, -t)) for i, (h, t) in enumerate(zip(heads, tails)))],
            w, b, stride, [max(h, 0) for h in heads] + [max(t, 0) for t in tails], dilation, args.get("group", 1))
        assert_close(y, expected, rtol=1e-4, atol=1e-4)
        dy = rng.standard_normal(y.shape).astype(F32)
        got = run("ConvGradient", [x, w, dy], 3, **args)
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
        pad_arg = []
        for i in reversed(range(2)):
            pad_arg += [heads[i], tails[i]]
        ty = F.conv2d(F.pad(tx, pad_arg), tw, None, stride=stride, dilation=dilation, groups=args.get("group", 1))
        ty.backward(torch.from_numpy(dy.astype(np.float64)))
        assert_close(got[0], tw.grad.numpy(), rtol=1e-4, atol=1e-3)
        assert_close(got[2], tx.grad.numpy(), rtol=1e-4, atol=1e-3)

    @pytest.mark.parametrize("x_shape,w_shape,args,force", [
        ((3, 1, 28, 28), (4, 1, 5, 5), {"kernel": 5}, False),  # LeNet's conv1 at the default thresholds
        ((3, 2, 9, 11), (5, 2, 3, 3), {"kernel": 3, "pad": 2, "dilation": 2}, False),
        ((2, 4, 7, 9), (6, 2, 3, 2), {"kernels": [3, 2], "group": 2, "pads": [1, 1, 2, 0]}, False),
        ((2, 2, 6, 7), (3, 2, 3, 3), {"kernel": 3, "pads": [0, 0, 2, 0]}, False),  # tail rows only: padded planes
        ((2, 1, 13, 14), (3, 1, 7, 7), {"kernel": 7, "pad": 3}, True),  # 5 + 2 kernel columns per row pass
        ((2, 3, 8, 9), (4, 3, 4, 4), {"kernels": [4, 4], "pads": [2, 1, 1, 2]}, True),  # 4 columns
        ((2, 3, 9, 8), (4, 3, 3, 1), {"kernels": [3, 1], "pads": [1, 0, 1, 0]}, False),  # 1 column
        ((2, 2, 30), (3, 2, 5), {"kernel": 5, "pad": 1}, False),  # 1-D
    ])
    @pytest.mark.parametrize("dtype", [F32, np.float64])
    def test_direct_path(self, monkeypatch, x_shape, w_shape, args, force, dtype):
        from nbcaffe.ops import _conv_common
        from nbcaffe.ops import _conv_cpu as conv_module

        if force:
            monkeypatch.setattr(conv_module, "DIRECT_MAX_DEPTH", 1000)
            monkeypatch.setattr(conv_module, "DIRECT_MAX_WASTE", 100.0)
            monkeypatch.setattr(conv_module, "DIRECT_FWD_MAX_OUT", 1000)
        rng = np.random.default_rng(15)
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        group = args.get("group", 1)
        window = _conv_pool.parse_window(_conv_args(args), "test", "conv")
        geo, m = _conv_common.filter_geometry(window, x_shape, w_shape, group)
        assert conv_module.forward_plan(geo, group, 1, m, 4)[0][3] == conv_module.FWD_DIRECT
        assert conv_module.filter_grad_plan(geo, group, m, 4)[0][3] == conv_module.FWD_DIRECT
        pads = list(geo.pad_head) + list(geo.pad_tail)
        tol = {"rtol": 1e-4, "atol": 1e-3} if dtype == F32 else {"rtol": 1e-10, "atol": 1e-10}
        (y,) = run("Conv", [x, w, b], **args)
        assert y.dtype == dtype
        assert_close(y, torch_conv(x, w, b, list(geo.stride), pads, list(geo.dilation), group), **tol)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dw, db, dx = torch_conv_grads(x, w, b, dy, list(geo.stride), pads, list(geo.dilation), group)
        got = run("ConvGradient", [x, w, dy], 3, **args)
        for a, e in zip(got, (dw, db, dx)):
            assert_close(a, e, **tol)
        got_dw, got_db = run("ConvGradient", [x, w, dy], 2, **args)  # no dX (a first layer)
        assert np.array_equal(got_dw, got[0]) and np.array_equal(got_db, got[1])
        assert all(np.array_equal(a, c) for a, c in zip(got, run("ConvGradient", [x, w, dy], 3, **args)))
        (y0,) = run("Conv", [x[:0], w, b], **args)
        assert y0.shape == (0,) + y.shape[1:]
        dw0, db0 = run("ConvGradient", [x[:0], w, dy[:0]], 2, **args)
        assert not dw0.any() and not db0.any()

    @pytest.mark.parametrize("x_shape,w_shape,args", [
        ((2, 6, 9, 11), (6, 1, 3, 3), {"kernel": 3, "pad": 1}),  # UltraFace's stride-1 layers
        ((2, 6, 12, 16), (6, 1, 3, 3), {"kernel": 3, "pad": 1, "stride": 2}),  # ... and stride 2
        ((1, 5, 10, 9), (5, 1, 3, 3), {"kernel": 3, "stride": 2, "pad": 1, "legacy_pad": 3}),  # Caffe ceil mode
        ((2, 3, 8, 7), (6, 1, 3, 2), {"kernels": [3, 2], "pads": [0, 1, 2, 0], "dilations": [2, 1]}),  # 2 per input
        ((3, 4, 7, 9), (4, 1, 5, 5), {"kernel": 5, "pad": 2, "strides": [1, 3]}),
        ((1, 4, 5, 6), (4, 1, 1, 1), {"kernel": 1}),
        ((2, 4, 30), (4, 1, 3), {"kernel": 3, "pad": 1, "stride": 2}),  # 1-D
    ])
    @pytest.mark.parametrize("dtype", [F32, np.float64])
    def test_depthwise_path(self, x_shape, w_shape, args, dtype):
        from nbcaffe.ops import _conv_common
        from nbcaffe.ops import _conv_cpu as conv_module

        rng = np.random.default_rng(16)
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        group = x_shape[1]
        window = _conv_pool.parse_window(_conv_args(args), "test", "conv")
        geo, m = _conv_common.filter_geometry(window, x_shape, w_shape, group)
        assert conv_module.forward_plan(geo, group, 1, m, 4)[0][3] == conv_module.FWD_DEPTHWISE
        pads = list(geo.pad_head) + list(geo.pad_tail)
        tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == F32 else {"rtol": 1e-12, "atol": 1e-12}
        expected = torch_conv(x, w, b, list(geo.stride), pads, list(geo.dilation), group)
        (y,) = run("Conv", [x, w, b], group=group, **args)
        assert y.dtype == dtype
        assert_close(y, expected, **tol)
        (y,) = run("Conv", [x, w], group=group, **args)
        assert_close(y, expected - b.reshape((-1,) + (1,) * (x.ndim - 2)), **tol)
        dy = rng.standard_normal(expected.shape).astype(dtype)  # the gradient still takes the GEMM paths
        dw, db, dx = torch_conv_grads(x, w, b, dy, list(geo.stride), pads, list(geo.dilation), group)
        for a, e in zip(run("ConvGradient", [x, w, dy], 3, group=group, **args), (dw, db, dx)):
            assert_close(a, e, rtol=1e-4, atol=1e-3)

    @pytest.mark.parametrize("x_shape,w_shape,args", [
        ((2, 16, 20, 22), (12, 16, 3, 3), {"kernel": 3, "pad": 1}),  # row-shift
        ((9, 2, 6, 6), (4, 2, 3, 3), {"kernel": 3, "stride": 2}),  # im2col, chunks of images
        ((1, 2, 9, 9), (4, 2, 3, 3), {"kernel": 3, "stride": 2, "pad": 1}),  # im2col, one image
        ((3, 6, 5, 4), (4, 6, 1, 1), {"kernel": 1}),  # 1x1 GEMM
        ((1, 6, 1, 1), (4, 6, 1, 1), {"kernel": 1}),  # 1x1 GEMM, one task: views built at bind
        ((1, 6, 3, 4), (6, 2, 1, 1), {"kernel": 1, "group": 3}),
        # one image, large enough (FORWARD_SERIAL_MACS) that the GEMM and bias pass split by
        # positions (or row blocks); depthwise planes over the pool
        ((1, 128, 64, 64), (64, 128, 1, 1), {"kernel": 1}),
        ((1, 32, 64, 64), (64, 32, 3, 3), {"kernel": 3, "stride": 2, "pad": 1}),
        ((1, 64, 40, 40), (32, 64, 3, 3), {"kernel": 3, "pad": 1}),
        ((4, 64, 64, 64), (64, 1, 3, 3), {"kernel": 3, "pad": 1, "group": 64}),
        ((1, 512, 7, 7), (512, 512, 1, 1), {"kernel": 1}),  # small images: split by output channels
        ((1, 256, 7, 7), (128, 256, 3, 3), {"kernel": 3, "pad": 1}),
        ((3, 6, 5, 4), (5, 1, 1, 4), {"kernel": 1, "order": "NHWC"}),
        ((2, 5, 6, 3), (4, 3, 3, 3), {"kernel": 3, "pad": 1, "order": "NHWC"}),
        ((3, 1, 28, 28), (4, 1, 5, 5), {"kernel": 5}),  # direct
        ((2, 6, 12, 16), (6, 1, 3, 3), {"kernel": 3, "pad": 1, "stride": 2, "group": 6}),  # depthwise
    ])
    def test_fused_ops_equal_the_unfused_ones(self, x_shape, w_shape, args):
        rng = np.random.default_rng(17)
        x = rng.standard_normal(x_shape).astype(F32)
        w = rng.standard_normal(w_shape).astype(F32)
        b = rng.standard_normal(w_shape[0]).astype(F32)
        for inputs in ([x, w, b], [x, w]):
            (y,) = run("Conv", inputs, **args)
            (r,) = run("ConvRelu", inputs, **args)
            assert np.array_equal(r, np.where(y > 0, y, 0)), "fused ReLU must equal Conv then Relu bitwise"
            assert (r == 0).any() and (r > 0).any()
            expected = torch_conv(x, w, inputs[2] if len(inputs) > 2 else None, [args.get("stride", 1)] * 2,
                                  [args.get("pad", 0)] * 4, [1, 1], args.get("group", 1)) \
                if args.get("order", "NCHW") == "NCHW" else None
            if expected is not None:
                assert_close(y, expected, rtol=1e-4, atol=1e-4)
        # ConvSumRelu: Conv, then Sum with a residual, then Relu (NCHW GEMM strategies fuse the
        # residual into their last pass, the others add it in one more pass)
        (y,) = run("Conv", [x, w, b], **args)
        res = rng.standard_normal(y.shape).astype(F32)
        (s,) = run("Sum", [y, res])
        (r,) = run("ConvSumRelu", [x, w, b, res], **args)
        assert np.array_equal(r, np.where(s > 0, s, 0)), "ConvSumRelu must equal Conv, Sum, Relu bitwise"
        # ConvPRelu: Conv, then PRelu with a per-channel or a shared slope
        order = args.get("order", "NCHW")
        for slope in (rng.uniform(0.1, 0.5, w_shape[0]).astype(F32), np.array([0.25], F32)):
            (p,) = run("PRelu", [y, slope], order=order)
            (r,) = run("ConvPRelu", [x, w, b, slope], **args)
            assert np.array_equal(r, p), "ConvPRelu must equal Conv then PRelu bitwise"

    def test_legacy_pads_and_conv3d(self):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((1, 2, 5, 6, 4)).astype(F32)
        w = rng.standard_normal((3, 2, 2, 3, 2)).astype(F32)
        (y,) = run("Conv3D", [x, w], kernels=[2, 3, 2], strides=[2, 2, 1], legacy_pad=2)
        # SAME: out = ceil(in / stride); pads split head-small
        heads, tails = [], []
        for size, k, s in zip(x.shape[2:], w.shape[2:], (2, 2, 1)):
            _, h, t = caffe2_size(size, k, s, 1, 0, 0, 2)
            heads.append(h)
            tails.append(t)
        assert y.shape == (1, 3, 3, 3, 4)
        assert_close(y, direct_conv(x, w, None, (2, 2, 1), heads + tails, (1, 1, 1), 1), rtol=1e-5, atol=1e-5)

    def test_float64_and_empty_batch(self):
        rng = np.random.default_rng(6)
        x = rng.standard_normal((2, 3, 5, 5))
        w = rng.standard_normal((4, 3, 3, 3))
        (y,) = run("Conv", [x, w], kernel=3)
        assert y.dtype == np.float64
        assert_close(y, direct_conv(x, w, None, (1, 1), (0,) * 4, (1, 1), 1), rtol=1e-12, atol=1e-12)
        (y0,) = run("Conv", [x[:0].astype(F32), w.astype(F32)], kernel=3)
        assert y0.shape == (0, 4, 3, 3)

    def test_deterministic_and_rebinds_on_new_shapes(self):
        rng = np.random.default_rng(7)
        w = rng.standard_normal((8, 4, 3, 3)).astype(F32)
        net = core.Net("conv_rerun")
        net.Conv(["x", "w"], "y", kernel=3, pad=1)
        workspace.FeedBlob("w", w)
        for shape in ((3, 4, 12, 10), (1, 4, 7, 9)):
            x = rng.standard_normal(shape).astype(F32)
            workspace.FeedBlob("x", x)
            workspace.RunNetOnce(net)
            first = workspace.FetchBlob("y")
            workspace.RunNetOnce(net)
            assert np.array_equal(first, workspace.FetchBlob("y"))
            assert_close(first, direct_conv(x, w, None, (1, 1), (1,) * 4, (1, 1), 1), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------- errors


class TestConvErrors:
    def setup_method(self):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((1, 4, 5, 5)).astype(F32)
        self.w = rng.standard_normal((6, 2, 3, 3)).astype(F32)

    def test_channel_mismatch_names_shapes_and_group(self):
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernel=3), [self.x, self.w], "(1, 4, 5, 5)",
               "(6, 2, 3, 3)", "group=1")

    def test_kernel_arguments_must_match_the_filter(self):
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernel=2, group=2), [self.x, self.w], "kernel [3, 3]",
               "[2, 2]")

    def test_bias_must_be_one_per_output_channel(self):
        raises(errors.ShapeError, op("Conv", ["x", "w", "b"], ["y"], kernel=3, group=2),
               [self.x, self.w, np.zeros(5, F32)], "bias (5,)", "(6,)")

    def test_output_channels_divisible_by_group(self):
        w = np.zeros((5, 2, 3, 3), F32)
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernel=3, group=2), [self.x, w], "not divisible")

    def test_image_smaller_than_kernel(self):
        x = np.zeros((1, 4, 2, 2), F32)
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernel=3, group=2), [x, self.w], "smaller than")

    def test_rank_mismatch(self):
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernels=[3], group=2), [self.x, self.w],
               "2 spatial dims", "describe 1")

    def test_integer_inputs_rejected(self):
        raises(errors.ShapeError, op("Conv", ["x", "w"], ["y"], kernel=3, group=2),
               [self.x.astype(np.int32), self.w.astype(np.int32)], "floating")

    @pytest.mark.parametrize("args,fragment", [
        ({"kernel": 3, "kernels": [3, 3]}, "given twice"),
        ({"kernel_h": 3}, "without 'kernel_w'"),
        ({"kernel": 3, "pad_t": 1, "pad_l": 1}, "give all four"),
        ({"kernel": 3, "pad": 1, "pads": [1, 1, 1, 1]}, "given twice"),
        ({"kernel": 3, "legacy_pad": 1, "pad": 1}, "computes the padding itself"),
        ({"kernel": 3, "pad": -1}, "pads must be >= 0"),
        ({"kernel": 0}, "kernel must be >= 1"),
        ({"kernel": 3, "stride": 0}, "stride must be >= 1"),
        ({"kernel": 3, "legacy_pad": 2, "dilation": 2}, "does not support dilation"),
        ({"kernel": 3, "legacy_pad": 7}, "legacy_pad=7"),
        ({"kernel": 3, "order": "CHWN"}, "order"),
        ({"kernels": [3, 3], "strides": [1, 1, 1]}, "disagree"),
        ({"stride": 2}, "kernel size is required"),
        ({"kernel": 3, "global_pooling": 1}, "unknown argument 'global_pooling'"),
    ])
    def test_argument_errors(self, args, fragment):
        with pytest.raises(errors.ArgumentError) as info:
            run("Conv", [self.x, self.w], **args)
        assert fragment in str(info.value)


# ----------------------------------------------------------------------------------- gradients


def torch_conv_grads(x, w, b, dy, stride, pads, dilation, group):
    rank = x.ndim - 2
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    pad_arg = []
    for i in reversed(range(rank)):
        pad_arg += [pads[i], pads[rank + i]]
    fn = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    y = fn(F.pad(tx, pad_arg), tw, None, stride=stride, dilation=dilation, groups=group)
    y.backward(torch.from_numpy(dy.astype(np.float64)))
    db = dy.astype(np.float64).sum(axis=tuple(i for i in range(dy.ndim) if i != 1))
    return tw.grad.numpy(), db, tx.grad.numpy()


class TestConvGradient:
    @pytest.mark.parametrize("direct", [True, False], ids=["direct", "gemm"])
    @settings(max_examples=30)
    @given(case=conv_case())
    def test_matches_torch_autograd(self, direct, case):
        x, w, b, stride, pads, dilation, group, order = case
        y_shape = torch_conv(x, w, None, stride, pads, dilation, group).shape
        dy = np.random.default_rng(1).standard_normal(y_shape).astype(F32)
        dw, db, dx = torch_conv_grads(x, w, b, dy, stride, pads, dilation, group)
        inputs = [x, w, dy] if order == "NCHW" else [nhwc(x), nhwc(w), nhwc(dy)]
        with strategies(direct):
            got = run("ConvGradient", inputs, 3, **conv_args(w.shape[2:], stride, pads, dilation, group, order))
        if order == "NHWC":
            got = [nchw(got[0]), got[1], nchw(got[2])]
        assert_close(got[0], dw, rtol=1e-4, atol=1e-3)
        assert_close(got[1], db, rtol=1e-4, atol=1e-3)
        assert_close(got[2], dx, rtol=1e-4, atol=1e-3)

    @pytest.mark.parametrize("shape", [(1, 8, 33, 20), (11, 3, 6, 6)])
    def test_task_splits(self, shape):
        rng = np.random.default_rng(8)
        x = rng.standard_normal(shape).astype(F32)
        w = rng.standard_normal((5, shape[1], 3, 3)).astype(F32)
        for stride, pad in ((1, 1), (2, 0)):
            y_shape = torch_conv(x, w, None, (stride,) * 2, (pad,) * 4, (1, 1), 1).shape
            dy = rng.standard_normal(y_shape).astype(F32)
            dw, db, dx = torch_conv_grads(x, w, None, dy, (stride,) * 2, (pad,) * 4, (1, 1), 1)
            got = run("ConvGradient", [x, w, dy], 3, kernel=3, stride=stride, pad=pad)
            for a, e in zip(got, (dw, db, dx)):
                assert_close(a, e, rtol=1e-4, atol=2e-3)
            again = run("ConvGradient", [x, w, dy], 3, kernel=3, stride=stride, pad=pad)
            assert all(np.array_equal(a, c) for a, c in zip(got, again))

    @pytest.mark.parametrize("stride,pad,group", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
    def test_fused_backward_path(self, stride, pad, group):
        """dX computed in dW's tasks (NCHW im2col for both, same chunks): several chunks of images."""
        from nbcaffe.ops import _conv_common
        from nbcaffe.ops import _conv_cpu as conv_module

        rng = np.random.default_rng(16)
        x = rng.standard_normal((9, 20, 12, 12)).astype(F32)
        w = rng.standard_normal((6, 20 // group, 5, 5)).astype(F32)
        args = {"kernel": 5, "stride": stride, "pad": pad, "group": group}
        window = _conv_pool.parse_window(_conv_args(args), "test", "conv")
        geo, m = _conv_common.filter_geometry(window, x.shape, w.shape, group)
        fplan = conv_module.filter_grad_plan(geo, group, m, 4)[0]
        dplan, flipped, _ = conv_module.data_grad_plan(geo, group, m, 4)
        assert conv_module.fused_backward(fplan, dplan, flipped)
        assert -(-9 // fplan[4]) > 2  # several chunks
        y_shape = torch_conv(x, w, None, (stride,) * 2, (pad,) * 4, (1, 1), group).shape
        dy = rng.standard_normal(y_shape).astype(F32)
        dw, db, dx = torch_conv_grads(x, w, None, dy, (stride,) * 2, (pad,) * 4, (1, 1), group)
        got = run("ConvGradient", [x, w, dy], 3, **args)
        for a, e in zip(got, (dw, db, dx)):
            assert_close(a, e, rtol=1e-4, atol=2e-3)

    def test_maker_follows_caffe2(self):
        conv = core.CreateOperator("Conv2D", ["x", "w", "b"], ["y"], kernel=3)
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(conv, ["y_grad"])
        assert [o.type for o in ops] == ["Conv2DGradient"]
        assert list(ops[0].input) == ["x", "w", "y_grad"] and list(ops[0].output) == ["w_grad", "b_grad", "x_grad"]
        assert g_in == ["x_grad", "w_grad", "b_grad"]
        conv = core.CreateOperator("Conv", ["x", "w"], ["y"], kernel=3, no_gradient_to_input=1)
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(conv, ["y_grad"])
        assert list(ops[0].output) == ["w_grad"] and g_in == [None, "w_grad"]
        assert any(a.name == "no_bias" and a.i == 1 for a in ops[0].arg)

    def test_no_bias_outputs(self):
        rng = np.random.default_rng(9)
        x = rng.standard_normal((2, 3, 5, 5)).astype(F32)
        w = rng.standard_normal((4, 3, 3, 3)).astype(F32)
        dy = rng.standard_normal((2, 4, 3, 3)).astype(F32)
        dw, _, dx = torch_conv_grads(x, w, None, dy, (1, 1), (0,) * 4, (1, 1), 1)
        got_dw, got_dx = run("ConvGradient", [x, w, dy], 2, kernel=3, no_bias=1)
        assert_close(got_dw, dw, rtol=1e-4, atol=1e-4)
        assert_close(got_dx, dx, rtol=1e-4, atol=1e-4)
        (only_dw,) = run("ConvGradient", [x, w, dy], 1, kernel=3, no_bias=1)
        assert_close(only_dw, dw, rtol=1e-4, atol=1e-4)

    def test_dy_shape_checked(self):
        x = np.zeros((1, 3, 5, 5), F32)
        w = np.zeros((4, 3, 3, 3), F32)
        raises(errors.ShapeError, op("ConvGradient", ["x", "w", "dy"], ["dw", "db", "dx"], kernel=3),
               [x, w, np.zeros((1, 4, 4, 4), F32)], "dY (1, 4, 4, 4)", "(1, 4, 3, 3)")


# ----------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestConvCuda:
    def test_forward_and_gradients_match_cpu(self, dc):
        rng = np.random.default_rng(12)
        x = rng.standard_normal((2, 4, 5, 6)).astype(F32)
        w = rng.standard_normal((4, 2, 2, 3)).astype(F32)
        b = rng.standard_normal(4).astype(F32)
        dy = rng.standard_normal((2, 4, 3, 3)).astype(F32)
        args = {"kernels": [2, 3], "strides": [2, 2], "pads": [1, 0, 0, 1], "group": 2, "dilations": [1, 1]}
        for order in ("NCHW", "NHWC"):
            t = (lambda a: a) if order == "NCHW" else nhwc
            check_devices(dc, op("Conv", ["x", "w", "b"], ["y"], order=order, **args), [t(x), t(w), b])
            check_devices(dc, op("ConvGradient", ["x", "w", "dy"], ["dw", "db", "dx"], order=order, **args),
                          [t(x), t(w), t(dy)])
            check_devices(dc, op("ConvTranspose", ["x", "w", "b"], ["y"], order=order, kernel=2, stride=2, adj=1,
                                 group=2), [t(x), t(np.ascontiguousarray(w[:, :, :, :2])), b])

    def test_conv1d_and_dilation(self, dc):
        rng = np.random.default_rng(13)
        x = rng.standard_normal((2, 3, 9)).astype(F32)
        w = rng.standard_normal((2, 3, 3)).astype(F32)
        check_devices(dc, op("Conv1D", ["x", "w"], ["y"], kernels=[3], dilations=[2], pads=[2, 1]), [x, w])
