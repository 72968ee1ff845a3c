"""Edge cases of the cross_entropy family: SoftmaxWithLoss (weights, scale, label_prob, spatial,
axis, label errors), LabelCrossEntropy, CrossEntropy; and of the loss family:
SquaredL2Distance, AveragedLoss.

Every expected value is computed by NumPy code written in this file (log-sum-exp in
float64, explicit loops for the spatial mode), independent of the ops' own references.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from nbcaffe import core, errors, workspace
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run

F32 = np.float32
CLAMP = 1e-20  # Caffe2 clamps probabilities before taking logs


def np_softmax_with_loss(x, labels, weights=None, scale=1.0, axis=1):
    """(probabilities, loss): loss = scale * sum_i w_i * nll_i / sum_i w_i (0 if sum w == 0)."""
    axis %= x.ndim
    n = math.prod(x.shape[:axis])
    rows = x.reshape(n, -1).astype(np.float64)
    m = rows.max(axis=1)
    log_z = m + np.log(np.exp(rows - m[:, None]).sum(axis=1))
    probs = np.exp(rows - log_z[:, None])
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    nll = log_z - rows[np.arange(n), lab]
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    loss = float((nll * w).sum() * scale / w.sum()) if w.sum() != 0 else 0.0
    return probs.reshape(x.shape), loss


def np_softmax_with_prob_labels(x, targets, weights=None, scale=1.0):
    rows = x.reshape(x.shape[0], -1).astype(np.float64)
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    per_row = -(targets.reshape(probs.shape) * np.log(np.maximum(probs, CLAMP))).sum(axis=1)
    w = np.ones(len(rows)) if weights is None else weights.astype(np.float64)
    loss = float((per_row * w).sum() * scale / w.sum()) if w.sum() != 0 else 0.0
    return probs.reshape(x.shape), loss


def np_spatial_softmax_with_loss(x, labels, weights=None):
    """Loop form of the spatial mode: softmax over C at each (n, h, w); label -1 is ignored."""
    n, c, h, w = x.shape
    labels = labels.reshape(n, h, w)
    weights = None if weights is None else weights.reshape(n, h, w)
    probs = np.empty(x.shape)
    total = weight_sum = 0.0
    for i in range(n):
        for yy in range(h):
            for xx in range(w):
                column = x[i, :, yy, xx].astype(np.float64)
                e = np.exp(column - column.max())
                probs[i, :, yy, xx] = e / e.sum()
                label = labels[i, yy, xx]
                if label == -1:
                    continue
                wt = 1.0 if weights is None else float(weights[i, yy, xx])
                total += -math.log(max(probs[i, label, yy, xx], CLAMP)) * wt
                weight_sum += wt
    return probs, (total / weight_sum if weight_sum != 0 else 0.0)


def swl(inputs, **args):
    """Run SoftmaxWithLoss; return (softmax, loss)."""
    names = ["X", "L", "W"][:len(inputs)]
    return run(op("SoftmaxWithLoss", names, ["P", "loss"], **args), inputs)


# Small inputs use the numba loop kernel; from 256 logits the CPU switches to a NumPy form.
SIZES = {"loop": (4, 5), "vector": (20, 24)}


@st.composite
def classification_case(draw):
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 7))
    x = draw(hnp.arrays(F32, (n, d), elements=st.floats(-20.0, 20.0, width=32)))
    labels = draw(hnp.arrays(np.int32, (n,), elements=st.integers(0, d - 1)))
    weights = draw(st.none() | hnp.arrays(F32, (n,), elements=st.floats(0.0, 3.0, width=32)))
    scale = draw(st.sampled_from([1.0, 0.5, 4.0]))
    return x, labels, weights, scale


class TestSoftmaxWithLoss:
    @given(case=classification_case())
    def test_matches_numpy(self, case):
        x, labels, weights, scale = case
        probs, loss = np_softmax_with_loss(x, labels, weights, scale)
        inputs = [x, labels] + ([] if weights is None else [weights])
        names = ["X", "L", "W"][:len(inputs)]
        check_reference(CPU_OPTION, op("SoftmaxWithLoss", names, ["P", "loss"], scale=scale), inputs,
                        reference=lambda *_: (probs.astype(F32), np.asarray(loss, F32)), threshold=1e-4)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
    def test_weights_and_scale(self, size, label_dtype):
        rng = np.random.default_rng(0)
        n, d = SIZES[size]
        x = rng.standard_normal((n, d)).astype(F32)
        labels = rng.integers(0, d, n).astype(label_dtype)
        weights = rng.uniform(0, 2, n).astype(F32)
        weights[0] = 0.0
        p, loss = swl([x, labels, weights], scale=2.5)
        exp_p, exp_loss = np_softmax_with_loss(x, labels, weights, 2.5)
        assert p.dtype == F32 and loss.dtype == F32 and loss.shape == ()
        assert_close(p, exp_p, rtol=1e-5, atol=1e-7)
        assert_close(loss, exp_loss, rtol=1e-5)

    @pytest.mark.parametrize("size", sorted(SIZES))
    def test_weights_summing_to_zero_give_zero(self, size):
        n, d = SIZES[size]
        x = np.random.default_rng(1).standard_normal((n, d)).astype(F32)
        labels = np.zeros(n, np.int32)
        p, loss = swl([x, labels, np.zeros(n, F32)], scale=3.0)
        assert float(loss) == 0.0
        assert_close(p, np_softmax_with_loss(x, labels)[0], rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_large_logits_stay_finite(self, size, dtype):
        n, d = SIZES[size]
        x = np.zeros((n, d), dtype)
        x[:, 0], x[:, 1] = 1000.0, -1000.0
        x[0, 2] = 3000.0
        labels = np.ones(n, np.int32)  # the label's probability underflows to 0
        p, loss = swl([x, labels])
        assert np.all(np.isfinite(p)) and np.isfinite(loss)
        exp_p, exp_loss = np_softmax_with_loss(x, labels)
        assert_close(p, exp_p, rtol=1e-6, atol=1e-12, dtype=dtype)
        # -log softmax is computed from logits (log-softmax), not from a clamped probability
        assert exp_loss > 1000
        assert_close(loss, exp_loss, rtol=1e-6, dtype=dtype)

    def test_float64(self):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((3, 4))
        labels = np.array([3, 0, 2], np.int32)
        weights = np.array([1.0, 0.25, 2.0])
        p, loss = swl([x, labels, weights], scale=0.5)
        exp_p, exp_loss = np_softmax_with_loss(x, labels, weights, 0.5)
        assert_close(p, exp_p, rtol=1e-12, atol=1e-14, dtype=np.float64)
        assert_close(loss, exp_loss, rtol=1e-12, dtype=np.float64)

    @pytest.mark.parametrize("x_shape,axis,label_shape", [((2, 3, 4), 2, (6,)), ((2, 3, 4), 2, (2, 3)),
                                                          ((2, 3, 4), -1, (6,)), ((2, 3, 4), 1, (2,)),
                                                          ((2, 3, 2, 2), 1, (2,))])
    def test_axis(self, x_shape, axis, label_shape):
        rng = np.random.default_rng(3)
        x = rng.standard_normal(x_shape).astype(F32)
        d = math.prod(x_shape[axis % len(x_shape):])
        labels = rng.integers(0, d, label_shape).astype(np.int32)
        p, loss = swl([x, labels], axis=axis)
        exp_p, exp_loss = np_softmax_with_loss(x, labels, axis=axis)
        assert p.shape == x_shape
        assert_close(p, exp_p, rtol=1e-5, atol=1e-7)
        assert_close(loss, exp_loss, rtol=1e-5)

    @pytest.mark.parametrize("with_weights", [False, True])
    def test_label_prob(self, with_weights):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((3, 5)).astype(F32)
        targets = rng.random((3, 5)).astype(F32)
        targets /= targets.sum(axis=1, keepdims=True)
        targets[1] = np.eye(5, dtype=F32)[2]
        weights = np.array([0.5, 2.0, 1.0], F32) if with_weights else None
        inputs = [x, targets] + ([weights] if with_weights else [])
        p, loss = swl(inputs, label_prob=1, scale=1.5)
        exp_p, exp_loss = np_softmax_with_prob_labels(x, targets, weights, 1.5)
        assert_close(p, exp_p, rtol=1e-5, atol=1e-7)
        assert_close(loss, exp_loss, rtol=1e-5)

    def test_label_prob_clamps_zero_probabilities(self):
        x = np.array([[1000.0, 0.0, -1000.0]], F32)
        targets = np.array([[0.0, 0.0, 1.0]], F32)
        _, loss = swl([x, targets], label_prob=1)
        assert_close(loss, -math.log(CLAMP), rtol=1e-5)

    @pytest.mark.parametrize("with_weights", [False, True])
    def test_spatial_ignores_minus_one(self, with_weights):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((2, 3, 2, 3)).astype(F32)
        labels = np.array([[[0, 2, -1], [1, -1, 2]], [[-1, -1, 0], [2, 1, 1]]], np.int32)
        weights = rng.uniform(0.5, 2, (2, 2, 3)).astype(F32) if with_weights else None
        inputs = [x, labels] + ([weights] if with_weights else [])
        p, loss = swl(inputs, spatial=1)
        exp_p, exp_loss = np_spatial_softmax_with_loss(x, labels, weights)
        assert_close(p, exp_p, rtol=1e-5, atol=1e-7)
        assert_close(loss, exp_loss, rtol=1e-5)
        # a -1 pixel contributes nothing, whatever its logits are
        x2 = x.copy()
        x2[0, :, 0, 2] = [50.0, -50.0, 7.0]
        _, loss2 = swl([x2, labels] + ([weights] if with_weights else []), spatial=1)
        assert_close(loss2, loss, rtol=1e-6)

    def test_spatial_all_ignored_or_zero_weight(self):
        x = np.random.default_rng(6).standard_normal((1, 3, 2, 2)).astype(F32)
        _, loss = swl([x, -np.ones((1, 2, 2), np.int32)], spatial=1)
        assert float(loss) == 0.0
        _, loss = swl([x, np.zeros((1, 2, 2), np.int32), np.zeros((1, 2, 2), F32)], spatial=1)
        assert float(loss) == 0.0

    @pytest.mark.parametrize("size", sorted(SIZES))
    @pytest.mark.parametrize("bad", [5, 99, -1, -7])
    def test_out_of_range_label(self, size, bad):
        n, d = SIZES[size]
        labels = np.zeros(n, np.int32)
        labels[2] = bad if bad < 0 else d - 5 + bad
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"]),
               [np.zeros((n, d), F32), labels], f"label {labels[2]}", "position 2", f"[0, {d})")

    @pytest.mark.parametrize("bad", [3, -2])
    def test_spatial_out_of_range_label(self, bad):
        labels = np.array([[[0, -1], [bad, 1]]], np.int32)
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], spatial=1),
               [np.zeros((1, 3, 2, 2), F32), labels], f"label {bad}", "[0, 3)", "-1 means ignore")

    @pytest.mark.parametrize("labels,args,fragment", [
        (np.zeros(3, F32), {}, "integer"),
        (np.zeros(4, np.int32), {}, "N=3"),
        (np.zeros((3, 4), F32), {"label_prob": 1}, "(3, 5)"),
        (np.zeros((2, 2, 2), np.int32), {"spatial": 1}, "4-D"),
    ])
    def test_label_errors(self, labels, args, fragment):
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], **args),
               [np.zeros((3, 5), F32), labels], fragment)

    def test_weight_count_and_logit_dtype(self):
        x, labels = np.zeros((3, 5), F32), np.zeros(3, np.int32)
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L", "W"], ["P", "loss"]),
               [x, labels, np.ones(2, F32)], "weights", "N=3")
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"]),
               [np.zeros((3, 5), np.int32), labels], "floating point")

    def test_empty_batch(self):
        p, loss = swl([np.zeros((0, 4), F32), np.zeros(0, np.int32)])
        assert p.shape == (0, 4) and float(loss) == 0.0


class TestCrossEntropies:
    def test_label_cross_entropy(self):
        x = np.array([[0.2, 0.5, 0.3], [0.0, 1.0, 0.0], [0.7, 0.1, 0.2]], F32)
        labels = np.array([1, 0, 2], np.int32)
        out = run(op("LabelCrossEntropy", ["X", "L"], ["Y"]), [x, labels])[0]
        expected = [-math.log(0.5), -math.log(CLAMP), -math.log(0.2)]
        assert_close(out, expected, rtol=1e-5, dtype=F32)

    def test_label_cross_entropy_1d_and_float64(self):
        x = np.array([0.25, 0.75])
        out = run(op("LabelCrossEntropy", ["X", "L"], ["Y"]), [x, np.array([1], np.int64)])[0]
        assert_close(out, [-math.log(0.75)], rtol=1e-12, dtype=np.float64)

    @pytest.mark.parametrize("labels,exc,fragment", [(np.array([0, 3], np.int32), errors.ShapeError, "label 3"),
                                                     (np.array([-1, 0], np.int32), errors.ShapeError, "label -1"),
                                                     (np.array([0.0, 1.0], F32), errors.ShapeError, "integer"),
                                                     (np.array([0, 1, 2], np.int32), errors.ShapeError, "N=2")])
    def test_label_cross_entropy_errors(self, labels, exc, fragment):
        raises(exc, op("LabelCrossEntropy", ["X", "L"], ["Y"]), [np.full((2, 3), 1 / 3, F32), labels], fragment)

    @given(data=st.data(), n=st.integers(1, 4), d=st.integers(1, 5))
    def test_cross_entropy(self, data, n, d):
        x = data.draw(hnp.arrays(F32, (n, d), elements=st.floats(0.0, 1.0, width=32)))
        t = data.draw(hnp.arrays(F32, (n, d), elements=st.floats(0.0, 1.0, width=32)))
        expected = -(t.astype(np.float64) * np.log(np.maximum(x.astype(np.float64), CLAMP))).sum(axis=1)
        check_reference(CPU_OPTION, op("CrossEntropy", ["X", "T"], ["Y"]), [x, t],
                        reference=lambda X, T: (expected.astype(F32),), threshold=1e-4)

    def test_cross_entropy_shape_mismatch(self):
        raises(errors.ShapeError, op("CrossEntropy", ["X", "T"], ["Y"]), [np.ones((2, 3), F32), np.ones((3, 2), F32)],
               "(2, 3)", "(3, 2)")


def test_shape_inference_with_dimensions_only():
    """Caffe2 users pass only dims to InferShapesAndTypes (types default to FLOAT); the label
    dtype checks happen when the ops run, so inference of a classifier net must not fail."""
    net = core.Net("loss_inference")
    net.LabelCrossEntropy(["X", "L"], "xent")
    net.SoftmaxWithLoss(["X", "L"], ["P", "loss"])
    shapes, _ = workspace.InferShapesAndTypes([net], {"X": [4, 3], "L": [4]})
    assert shapes["xent"] == [4] and shapes["P"] == [4, 3] and shapes["loss"] == []


class TestSquaredL2AndAverage:
    @pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2), (5,), (0, 3), (2, 0)])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_squared_l2(self, shape, dtype):
        rng = np.random.default_rng(7)
        x = rng.standard_normal(shape).astype(dtype)
        y = rng.standard_normal(shape).astype(dtype)
        n = shape[0]
        expected = 0.5 * ((x.astype(np.float64) - y).reshape(n, -1) ** 2).sum(axis=1) if n else np.zeros(0)
        out = run(op("SquaredL2Distance", ["X", "Y"], ["Z"]), [x, y])[0]
        assert_close(out, expected, rtol=1e-6, atol=1e-12, dtype=dtype)

    def test_squared_l2_errors(self):
        raises(errors.ShapeError, op("SquaredL2Distance", ["X", "Y"], ["Z"]),
               [np.ones((2, 3), F32), np.ones((2, 4), F32)], "(2, 3)", "(2, 4)")
        raises(errors.ShapeError, op("SquaredL2Distance", ["X", "Y"], ["Z"]),
               [np.ones((2, 3), F32), np.ones((2, 3), np.float64)], "dtype")

    @pytest.mark.parametrize("shape", [(7,), (3, 4), (20, 30), ()])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_averaged_loss(self, shape, dtype):
        x = np.random.default_rng(8).standard_normal(shape).astype(dtype)
        out = run(op("AveragedLoss", ["X"], ["loss"]), [x])[0]
        assert_close(out, x.astype(np.float64).mean(), rtol=1e-5, dtype=dtype)


class TestArguments:
    @pytest.mark.parametrize("bad,good", [("lable_prob", "label_prob"), ("scal", "scale"), ("spatail", "spatial")])
    def test_unknown_argument_suggests(self, bad, good):
        error = raises(errors.ArgumentError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], **{bad: 1}),
                       [np.zeros((2, 3), F32), np.zeros(2, np.int32)], f"'{bad}'", "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    @pytest.mark.parametrize("args", [{"scale": "x"}, {"label_prob": 0.5}, {"axis": "1"}])
    def test_wrong_argument_type(self, args):
        raises(errors.ArgumentError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], **args),
               [np.zeros((2, 3), F32), np.zeros(2, np.int32)], f"'{next(iter(args))}'")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestLossCuda:
    def test_softmax_with_loss_plain_and_weighted(self, dc):
        rng = np.random.default_rng(9)
        x = rng.standard_normal((3, 11)).astype(F32)  # rows longer than the simulator's 8-thread block
        x[0, :2] = [1000.0, -1000.0]
        labels = np.array([1, 10, 4], np.int32)
        weights = np.array([0.5, 0.0, 2.0], F32)
        outs = check_devices(dc, op("SoftmaxWithLoss", ["X", "L", "W"], ["P", "loss"], scale=2.0),
                             [x, labels, weights])
        exp_p, exp_loss = np_softmax_with_loss(x, labels, weights, 2.0)
        assert_close(outs[1][0], exp_p, rtol=1e-5, atol=1e-7)
        assert_close(outs[1][1], exp_loss, rtol=1e-5)
        outs = check_devices(dc, op("SoftmaxWithLoss", ["X", "L", "W"], ["P", "loss"]),
                             [x, labels, np.zeros(3, F32)])
        assert float(outs[1][1]) == 0.0

    def test_label_prob_and_spatial(self, dc):
        rng = np.random.default_rng(10)
        x = rng.standard_normal((2, 3)).astype(F32)
        targets = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], F32)
        check_devices(dc, op("SoftmaxWithLoss", ["X", "T"], ["P", "loss"], label_prob=1), [x, targets])
        xs = rng.standard_normal((2, 3, 1, 2)).astype(F32)
        labels = np.array([[[0, -1]], [[2, 1]]], np.int32)
        weights = np.array([[[1.0, 5.0]], [[0.5, 2.0]]], F32)
        outs = check_devices(dc, op("SoftmaxWithLoss", ["X", "L", "W"], ["P", "loss"], spatial=1),
                             [xs, labels, weights])
        exp_p, exp_loss = np_spatial_softmax_with_loss(xs, labels, weights)
        assert_close(outs[1][0], exp_p, rtol=1e-5, atol=1e-7)
        assert_close(outs[1][1], exp_loss, rtol=1e-5)

    @pytest.mark.parametrize("args,labels,fragment", [
        ({}, np.array([0, 4], np.int32), "label 4"),
        ({}, np.array([-1, 0], np.int32), "label -1"),
        ({"spatial": 1}, np.array([[[0, 5]], [[-1, 1]]], np.int32), "label 5"),
    ])
    def test_bad_labels_on_cuda(self, dc, args, labels, fragment):
        x = np.zeros((2, 4, 1, 2) if args else (2, 4), F32)
        raises(errors.ShapeError, op("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], **args), [x, labels], fragment,
               device_option=dc[1])

    def test_other_losses(self, dc):
        probs = np.array([[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]], F32)
        check_devices(dc, op("LabelCrossEntropy", ["X", "L"], ["Y"]), [probs, np.array([2, 0], np.int32)])
        raises(errors.ShapeError, op("LabelCrossEntropy", ["X", "L"], ["Y"]), [probs, np.array([0, 3], np.int32)],
               "label 3", device_option=dc[1])
        check_devices(dc, op("CrossEntropy", ["X", "T"], ["Y"]), [probs, probs[::-1].copy()])
        x = np.arange(12, dtype=F32).reshape(3, 2, 2) / 7
        check_devices(dc, op("SquaredL2Distance", ["X", "Y"], ["Z"]), [x, x[::-1].copy()])
        check_devices(dc, op("AveragedLoss", ["X"], ["loss"]), [x])


@settings(max_examples=3)
@given(case=classification_case())
@pytest.mark.cuda
def test_cuda_softmax_with_loss_hypothesis(case):
    x, labels, weights, scale = case
    inputs = [x, labels] + ([] if weights is None else [weights])
    names = ["X", "L", "W"][:len(inputs)]
    outs = check_devices(nst.device_options(), op("SoftmaxWithLoss", names, ["P", "loss"], scale=scale), inputs)
    assert_close(outs[-1][1], np_softmax_with_loss(x, labels, weights, scale)[1], rtol=1e-4, atol=1e-5)
