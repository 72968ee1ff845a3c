"""Dropout and DropoutGrad: mask statistics, exact scaling, seeding, inference mode, gradient.

The mask is random, so its tests are statistical: with n draws the kept fraction must lie
within five standard errors of 1 - ratio (fails by chance with probability < 1e-6), on the
CPU (NumPy's PCG64) and on CUDA (the counter-based hash generator).  Everything else is exact:
Y == X * (1 / (1 - ratio)) * mask with the scale in X's dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbcaffe import autograd, core, errors, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.ops.dropout import CHUNK
from tests.ops._util import op, raises, run

F32 = np.float32


def seeded(seed, device_type=CPU):
    return DeviceOption(device_type, 0 if device_type == CUDA else None, random_seed=seed)


def dropout(outputs=("Y", "mask"), inputs=("X",), **args):
    return op("Dropout", list(inputs), list(outputs), **args)


def assert_kept_fraction(mask, ratio, what=""):
    n = mask.size
    keep = 1.0 - ratio
    bound = 5 * math.sqrt(keep * (1 - keep) / n)
    frac = float(mask.mean())
    assert abs(frac - keep) <= bound, f"{what}: kept {frac:.4f} of {n}, expected {keep} +- {bound:.4f}"


def expected_scale(ratio, dtype):
    """1 / (1 - ratio) in the input's dtype, with ratio as the OperatorDef carries it (Argument.f
    is a float32 field; Caffe2 read it as a float too)."""
    return np.dtype(dtype).type(1.0 / (1.0 - float(np.float32(ratio))))


def expected_y(x, mask, ratio):
    return x * expected_scale(ratio, x.dtype) * mask.astype(x.dtype)


class TestDropoutTraining:
    @pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
    def test_mask_statistics_and_exact_scaling(self, ratio):
        x = np.random.default_rng(1).standard_normal((40, 250)).astype(F32)
        y, mask = run(dropout(ratio=ratio), [x], seeded(3))
        assert mask.dtype == np.bool_ and mask.shape == x.shape and y.dtype == F32
        assert_kept_fraction(mask, ratio, "whole tensor")
        # every row and column block is thinned alike (no stripes of a broken generator)
        for block in np.array_split(mask.reshape(-1), 8):
            assert abs(float(block.mean()) - (1 - ratio)) < 6 * math.sqrt(ratio * (1 - ratio) / block.size)
        np.testing.assert_array_equal(y, expected_y(x, mask, ratio))
        assert np.all(y[~mask] == 0)
        np.testing.assert_allclose(y[mask], x[mask] / (1 - ratio), rtol=1e-6)

    def test_mask_elements_are_independent(self):
        """Adjacent mask elements agree as often as independent coins would (1 - 2p(1-p))."""
        mask = run(dropout(ratio=0.3), [np.ones(20000, F32)], seeded(4))[1]
        same = float((mask[1:] == mask[:-1]).mean())
        p = 0.7
        expected = p * p + (1 - p) * (1 - p)
        assert abs(same - expected) < 5 * math.sqrt(expected * (1 - expected) / (mask.size - 1))

    def test_expectation_is_preserved(self):
        x = np.full(50000, 2.0, F32)
        y = run(dropout(ratio=0.4), [x], seeded(5))[0]
        # E[Y] = X; Var[Y] = X² ratio / (1 - ratio)
        std = 2.0 * math.sqrt(0.4 / 0.6)
        assert abs(float(y.mean()) - 2.0) < 5 * std / math.sqrt(y.size)

    def test_tensor_larger_than_one_chunk(self):
        """The CPU draws CHUNK uniforms at a time: every chunk has fresh, correctly thinned draws."""
        n = 2 * CHUNK + 123
        x = np.arange(n, dtype=np.float64)
        y, mask = run(dropout(ratio=0.5), [x], seeded(6))
        for part in (mask[:CHUNK], mask[CHUNK:2 * CHUNK], mask[2 * CHUNK:]):
            assert_kept_fraction(part, 0.5, "chunk")
        assert not np.array_equal(mask[:CHUNK], mask[CHUNK:2 * CHUNK])
        np.testing.assert_array_equal(y, np.where(mask, x * 2.0, 0.0))

    def test_ratio_zero_keeps_everything(self):
        x = np.random.default_rng(7).standard_normal((3, 5)).astype(F32)
        y, mask = run(dropout(ratio=0.0), [x])
        assert mask.all()
        np.testing.assert_array_equal(y, x)

    def test_in_place(self):
        x = np.random.default_rng(8).standard_normal(1000).astype(F32)
        y, mask = run(dropout(["X", "mask"], ratio=0.25), [x], seeded(9))
        np.testing.assert_array_equal(y, expected_y(x, mask, 0.25))
        assert_kept_fraction(mask, 0.25)

    def test_float64_input(self):
        x = np.random.default_rng(10).standard_normal(500)
        y, mask = run(dropout(ratio=0.3), [x], seeded(11))
        assert y.dtype == np.float64
        np.testing.assert_array_equal(y, x * expected_scale(0.3, np.float64) * mask)

    def test_non_finite_values_follow_caffe2(self):
        """Y = X * scale * mask: a dropped inf or NaN gives NaN, a kept one stays."""
        x = np.array([np.inf, -np.inf, np.nan] * 200, F32)
        y, mask = run(dropout(ratio=0.5), [x], seeded(12))
        assert 0 < mask.sum() < mask.size
        assert np.all(np.isnan(y[~mask]))
        np.testing.assert_array_equal(y[mask], x[mask])

    def test_seed_repeats_the_mask_and_runs_draw_new_masks(self):
        x = np.ones(256, F32)
        a = run(dropout(ratio=0.5), [x], seeded(13))[1]
        b = run(dropout(ratio=0.5), [x], seeded(13))[1]
        c = run(dropout(ratio=0.5), [x], seeded(14))[1]
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        net = core.Net("dropout_runs")
        net.Dropout(["X"], ["Y", "mask"], ratio=0.5, random_seed=13)
        workspace.FeedBlob("X", x)
        workspace.CreateNet(net)
        masks = []
        for _ in range(3):
            workspace.RunNet("dropout_runs")
            masks.append(workspace.FetchBlob("mask"))
        np.testing.assert_array_equal(masks[0], a)  # the first run of a seeded op is its first draw
        assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])

    def test_unseeded_ops_differ(self):
        x = np.ones(256, F32)
        assert not np.array_equal(run(dropout(), [x])[1], run(dropout(), [x])[1])

    def test_shape_inference(self):
        from nbcaffe.testing.op_test import inferred_outputs

        shapes, dtypes = inferred_outputs(dropout(), [np.ones((2, 3), F32)])
        assert shapes == {"Y": (2, 3), "mask": (2, 3)}
        assert dtypes["Y"] == np.float32 and dtypes["mask"] == np.bool_


class TestDropoutInference:
    def test_identity_and_all_true_mask(self):
        x = np.random.default_rng(20).standard_normal((4, 3)).astype(F32)
        y, mask = run(dropout(is_test=1, ratio=0.9), [x])
        np.testing.assert_array_equal(y, x)
        assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()

    def test_one_output_and_in_place(self):
        x = np.random.default_rng(21).standard_normal(7).astype(F32)
        np.testing.assert_array_equal(run(dropout(["Y"], is_test=1), [x])[0], x)
        np.testing.assert_array_equal(run(dropout(["X"], is_test=1), [x])[0], x)

    def test_mask_is_refilled_every_run(self):
        """The mask is the op's own output buffer: if something writes into it between runs (an
        in-place consumer), the next run still gives an all-True mask."""
        net = core.Net("dropout_test_runs")
        net.Dropout(["X"], ["Y", "mask"], is_test=1)
        workspace.FeedBlob("X", np.ones(5, F32))
        workspace.CreateNet(net)
        workspace.RunNet("dropout_test_runs")
        workspace.current().blobs["mask"][:] = False  # the stored buffer itself, not a fetched copy
        workspace.RunNet("dropout_test_runs")
        np.testing.assert_array_equal(workspace.FetchBlob("mask"), np.ones(5, np.bool_))


class TestDropoutErrors:
    @pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
    def test_ratio_range(self, ratio):
        raises(errors.ArgumentError, dropout(ratio=ratio), [np.ones(3, F32)], "ratio must be in [0, 1)")

    def test_training_needs_the_mask_output(self):
        raises(errors.SchemaError, dropout(["Y"]), [np.ones(3, F32)], "produces 2 outputs")

    def test_integer_input(self):
        raises(errors.ShapeError, dropout(), [np.ones(3, np.int32)], "floating point")

    def test_dropout_grad_errors(self):
        g = op("DropoutGrad", ["dY"], ["dX"])
        raises(errors.SchemaError, g, [np.ones(3, F32)], "needs the mask")
        g = op("DropoutGrad", ["dY", "mask"], ["dX"])
        raises(errors.ShapeError, g, [np.ones(3, F32), np.ones(4, np.bool_)], "mask (4,)", "dY (3,)")
        raises(errors.ShapeError, g, [np.ones(3, F32), np.ones(3, F32)], "bool")


class TestDropoutGrad:
    def test_gradient_is_dy_times_mask_times_scale(self):
        r = np.random.default_rng(30)
        dy = r.standard_normal((5, 6)).astype(F32)
        mask = r.random((5, 6)) < 0.6
        dx = run(op("DropoutGrad", ["dY", "mask"], ["dX"], ratio=0.4), [dy, mask])[0]
        np.testing.assert_array_equal(dx, dy * expected_scale(0.4, F32) * mask.astype(F32))
        dx = run(op("DropoutGrad", ["dY", "mask"], ["dY"], ratio=0.4), [dy, mask])[0]
        np.testing.assert_array_equal(dx, dy * expected_scale(0.4, F32) * mask.astype(F32))

    def test_inference_gradient_is_identity(self):
        dy = np.random.default_rng(31).standard_normal(9).astype(F32)
        np.testing.assert_array_equal(run(op("DropoutGrad", ["dY"], ["dX"], is_test=1), [dy])[0], dy)

    def test_maker_follows_caffe2(self):
        ops, g_in = autograd.GradientRegistry.GetGradientForOp(dropout(ratio=0.3), ["Y_grad", None])
        assert [o.type for o in ops] == ["DropoutGrad"]
        assert list(ops[0].input) == ["Y_grad", "mask"] and g_in == ["X_grad"]
        assert {a.name for a in ops[0].arg} == {"ratio"}
        ops, _ = autograd.GradientRegistry.GetGradientForOp(dropout(["Y"], is_test=1), ["Y_grad"])
        assert list(ops[0].input) == ["Y_grad"]

    def test_backward_through_a_net_uses_the_forward_mask(self):
        x = np.random.default_rng(32).standard_normal(300).astype(F32)
        net = core.Net("dropout_backward")
        net.Dropout(["X"], ["Y", "mask"], ratio=0.5, random_seed=33)
        net.SumElements(["Y"], ["loss"])
        net.AddGradientOperators(["loss"])
        workspace.FeedBlob("X", x)
        workspace.RunNetOnce(net)
        mask = workspace.FetchBlob("mask")
        # d(sum Y)/dX = mask / (1 - ratio)
        np.testing.assert_array_equal(workspace.FetchBlob("X_grad"), F32(2.0) * mask.astype(F32))


@pytest.mark.cuda
class TestDropoutCUDA:
    @pytest.mark.parametrize("ratio", [0.2, 0.5, 0.75])
    def test_mask_statistics_and_exact_scaling(self, dc, ratio):
        x = np.random.default_rng(40).standard_normal(3000).astype(F32)
        y, mask = run(dropout(ratio=ratio), [x], seeded(41, CUDA))
        assert mask.dtype == np.bool_ and y.dtype == F32
        assert_kept_fraction(mask, ratio, "cuda")
        np.testing.assert_array_equal(y, expected_y(x, mask, ratio))

    def test_seeding_and_fresh_draws(self, dc):
        x = np.ones(2000, F32)
        a = run(dropout(ratio=0.5), [x], seeded(42, CUDA))[1]
        b = run(dropout(ratio=0.5), [x], seeded(42, CUDA))[1]
        c = run(dropout(ratio=0.5), [x], seeded(43, CUDA))[1]
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        same = float((a[1:] == a[:-1]).mean())
        assert abs(same - 0.5) < 5 * math.sqrt(0.25 / (a.size - 1))
        with workspace.temp_workspace("_dropout_cuda_runs_"):
            net = core.Net("dropout_cuda_runs")
            net.Dropout(["X"], ["Y", "mask"], ratio=0.5, device_option=seeded(42, CUDA))
            workspace.FeedBlob("X", x, seeded(42, CUDA))
            workspace.CreateNet(net)
            workspace.RunNet("dropout_cuda_runs")
            first = workspace.FetchBlob("mask")
            workspace.RunNet("dropout_cuda_runs")
            assert not np.array_equal(first, workspace.FetchBlob("mask"))
        np.testing.assert_array_equal(first, a)

    def test_in_place_and_inference(self, dc):
        x = np.random.default_rng(44).standard_normal((6, 50)).astype(F32)
        y, mask = run(dropout(["X", "mask"], ratio=0.3), [x], seeded(45, CUDA))
        np.testing.assert_array_equal(y, expected_y(x, mask, 0.3))
        y, mask = run(dropout(is_test=1), [x], DeviceOption(CUDA, 0))
        np.testing.assert_array_equal(y, x)
        assert mask.all()
        np.testing.assert_array_equal(run(dropout(["X"], is_test=1), [x], DeviceOption(CUDA, 0))[0], x)

    def test_grad(self, dc):
        r = np.random.default_rng(46)
        dy = r.standard_normal(333).astype(F32)
        mask = r.random(333) < 0.5
        for device in dc:
            dx = run(op("DropoutGrad", ["dY", "mask"], ["dX"], ratio=0.5), [dy, mask], device)[0]
            np.testing.assert_array_equal(dx, dy * F32(2.0) * mask.astype(F32))
            dx = run(op("DropoutGrad", ["dY"], ["dX"], is_test=1), [dy], device)[0]
            np.testing.assert_array_equal(dx, dy)
