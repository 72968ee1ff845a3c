"""Edge cases of ConvTranspose / ConvTransposeGradient (Conv and ConvGradient: test_conv.py).

Expected values come from torch.nn.functional.conv_transpose2d and its autograd, written
here, never from the op's own reference.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import errors
from tests.ops._util import assert_close, nchw, nhwc, op, raises
from tests.ops._util import run_named as run

torch = pytest.importorskip("torch")
F = torch.nn.functional
F32 = np.float32


# ----------------------------------------------------------------------------------- transpose


def torch_transpose(x, w, b, stride, pads, adj, group):
    """conv_transpose{1,2,3}d without padding, then Caffe2's pads cropped off (head, tail - adj)."""
    rank = x.ndim - 2
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[rank - 1]
    tb = None if b is None else torch.from_numpy(b.astype(np.float64))
    full = fn(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), tb, stride=stride,
              groups=group).numpy()
    # adj appends cells that only hold the bias; then pads crop both ends
    widths = [(0, 0), (0, 0)] + [(0, a) for a in adj]
    full = np.pad(full, widths)
    if b is not None:
        for i, a in enumerate(adj):
            if a:
                index = [slice(None)] * full.ndim
                index[2 + i] = slice(full.shape[2 + i] - a, None)
                full[tuple(index)] = 0
                full[tuple(index)] += b.reshape((1, -1) + (1,) * rank)
    index = [slice(None), slice(None)]
    for i in range(rank):
        index.append(slice(pads[i], full.shape[2 + i] - pads[rank + i]))
    return full[tuple(index)]


class TestConvTranspose:
    @settings(max_examples=30)
    @given(data=st.data())
    def test_matches_torch(self, data):
        rank = data.draw(st.sampled_from([1, 2, 2, 3]))
        group = data.draw(st.sampled_from([1, 2]))
        cin, cout = data.draw(st.integers(1, 3)) * group, data.draw(st.integers(1, 3)) * group
        kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
        stride = [data.draw(st.integers(1, 3)) for _ in range(rank)]
        adj = [data.draw(st.integers(0, s - 1)) for s in stride]
        pads = [data.draw(st.integers(0, k - 1)) for k in kernel] + [data.draw(st.integers(0, k - 1)) for k in kernel]
        sizes = [data.draw(st.integers(1, 4)) for _ in range(rank)]
        order = data.draw(st.sampled_from(["NCHW", "NHWC"]))
        rng = np.random.default_rng(data.draw(st.integers(0, 999)))
        x = rng.standard_normal((2, cin, *sizes)).astype(F32)
        w = rng.standard_normal((cin, cout // group, *kernel)).astype(F32)
        b = rng.standard_normal(cout).astype(F32) if data.draw(st.booleans()) else None
        expected = torch_transpose(x, w, b, stride, pads, adj, group)
        if min(expected.shape[2:]) < 1:
            return
        inputs = [x, w] if order == "NCHW" else [nhwc(x), nhwc(w)]
        inputs += [b] if b is not None else []
        (y,) = run("ConvTranspose", inputs, kernels=kernel, strides=stride, pads=pads, adjs=adj, group=group,
                   order=order)
        assert_close(y if order == "NCHW" else nchw(y), expected, rtol=1e-4, atol=1e-4)

    def test_gradient_matches_torch_autograd(self):
        rng = np.random.default_rng(10)
        for stride, pad, adj, group in ((2, 1, 1, 1), (1, 1, 0, 2), (3, 0, 2, 1)):
            x = rng.standard_normal((2, 4, 3, 4)).astype(F32)
            w = rng.standard_normal((4, 6 // group, 3, 3)).astype(F32)
            tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
            tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
            y = F.conv_transpose2d(tx, tw, None, stride=stride, padding=pad, output_padding=adj, groups=group)
            dy = rng.standard_normal(tuple(y.shape)).astype(F32)
            y.backward(torch.from_numpy(dy.astype(np.float64)))
            for order in ("NCHW", "NHWC"):
                inputs = [x, w, dy] if order == "NCHW" else [nhwc(x), nhwc(w), nhwc(dy)]
                dw, db, dx = run("ConvTransposeGradient", inputs, 3, kernel=3, stride=stride, pad=pad, adj=adj,
                                 group=group, order=order)
                if order == "NHWC":
                    dw, dx = nchw(dw), nchw(dx)
                assert_close(dw, tw.grad.numpy(), rtol=1e-4, atol=1e-3)
                assert_close(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-3)
                assert_close(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-3)

    def test_valid_and_same_mean_no_padding(self):
        rng = np.random.default_rng(11)
        x = rng.standard_normal((1, 2, 3, 3)).astype(F32)
        w = rng.standard_normal((2, 3, 2, 2)).astype(F32)
        for legacy in (1, 2):
            (y,) = run("ConvTranspose", [x, w], kernel=2, stride=2, legacy_pad=legacy)
            assert_close(y, torch_transpose(x, w, None, (2, 2), (0,) * 4, (0, 0), 1), rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("args,fragment", [
        ({"kernel": 2, "adj": 3, "stride": 2}, "must not exceed stride"),
        ({"kernel": 2, "legacy_pad": 3}, "not supported by ConvTranspose"),
        ({"kernel": 2, "dilation": 2}, "unknown argument 'dilation'"),
    ])
    def test_argument_errors(self, args, fragment):
        x = np.zeros((1, 2, 3, 3), F32)
        w = np.zeros((2, 3, 2, 2), F32)
        with pytest.raises(errors.ArgumentError) as info:
            run("ConvTranspose", [x, w], **args)
        assert fragment in str(info.value)

    def test_filter_must_start_with_input_channels(self):
        raises(errors.ShapeError, op("ConvTranspose", ["x", "w"], ["y"], kernel=2), [np.zeros((1, 2, 3, 3), F32),
               np.zeros((3, 2, 2, 2), F32)], "(C_in, C_out/group, *kernel)")
