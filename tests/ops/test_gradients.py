"""Gradient operators: the broadcast reductions of AddGradient/SubGradient/MulGradient/
DivGradient/PowGradient (legacy ``broadcast=1, axis``, NumPy both-sided, scalar B, empty
tensors), gradients through in-place forward ops built with Net.AddGradientOperators, the
unary gradient ops on both sides of the CPU NumPy switch, argument/shape errors, and CPU
vs CUDA for the gradient kernels.

Expected values are NumPy written here: partials at every position of the broadcast result,
summed over the axes along which each input was repeated.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from nbcaffe import autograd, core, errors, workspace
from nbcaffe.testing import check_devices, check_gradient, check_reference
from tests.ops._util import CPU_OPTION, assert_close, op, raises, run

F32 = np.float32
BINARY = ("Add", "Sub", "Mul", "Div")


def partials(op_type, dc, a, b):
    """dC times dC/dA and dC times dC/dB at every position of C."""
    if op_type == "Add":
        return dc, dc
    if op_type == "Sub":
        return dc, -dc
    if op_type == "Mul":
        return dc * b, dc * a
    return dc / b, -dc * a / (b * b)  # Div


def summed_to(x, shape, full_shape=None):
    """x (C's shape) summed over the axes where ``full_shape`` (the input right-aligned, with
    1s where it repeats; default: ``shape`` padded on the left) is 1 but C is not."""
    full = tuple(full_shape) if full_shape is not None else (1,) * (x.ndim - len(shape)) + tuple(shape)
    axes = tuple(d for d in range(x.ndim) if full[d] == 1 and x.shape[d] != 1)
    return x.sum(axis=axes).reshape(shape)


def values(shape, rng, positive=False):
    if positive:
        return rng.uniform(0.5, 2.0, shape).astype(F32)
    return rng.standard_normal(shape).astype(F32)


def divisor(shape, rng):
    """|b| in [0.5, 2] with random signs (safe divisors)."""
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(F32)


def gradient_op(op_type, **args):
    inputs = ["dC", "A", "B", "C"] if op_type == "Div" else ["dC", "A", "B"]
    return op(f"{op_type}Gradient", inputs, ["dA", "dB"], **args)


def run_gradient(op_type, a, b, dc, full_b=None, **args):
    """dA, dB from the gradient op (CPU) for forward inputs a, b and output gradient dc."""
    inputs = [dc, a, b]
    if op_type == "Div":
        bb = b.reshape(full_b) if full_b is not None else b
        inputs.append((a / bb).astype(a.dtype))
    return run(gradient_op(op_type, **args), inputs)


def expected(op_type, a, b, dc, full_b=None):
    """NumPy dA, dB; ``full_b`` is B reshaped for NumPy broadcasting (legacy cases)."""
    a64, dc64 = a.astype(np.float64), dc.astype(np.float64)
    b64 = b.astype(np.float64).reshape(full_b if full_b is not None else b.shape)
    pa, pb = partials(op_type, dc64, a64, b64)
    pa, pb = np.broadcast_to(pa, dc.shape), np.broadcast_to(pb, dc.shape)
    return summed_to(pa, a.shape), summed_to(pb, b.shape, None if full_b is None else
                                             (1,) * (dc.ndim - len(full_b)) + tuple(full_b))


# (A shape, B shape, args, B reshaped for NumPy broadcasting)
LEGACY = [
    ((2, 3, 4, 5), (3, 4), {"axis": 1}, (3, 4, 1)),
    ((2, 3, 4, 5), (4, 5), {}, (4, 5)),  # default axis: B is a suffix of A
    ((2, 3, 4, 5), (3,), {"axis_str": "C", "order": "NCHW"}, (3, 1, 1)),
    ((2, 3, 4, 5), (5,), {"axis_str": "W", "order": "NCHW"}, (5,)),
    ((2, 3, 4, 5), (1, 3, 4, 1), {"axis": 0}, (3, 4, 1)),  # leading/trailing 1s of B ignored
    ((2, 3, 4), (1,), {}, (1,)),  # a scalar B
    ((2, 3), (2, 3), {}, (2, 3)),  # same shapes: no reduction
]
NUMPY = [
    ((3, 1), (1, 4)),  # both inputs repeat
    ((2, 3, 4), ()),  # 0-d B
    ((2, 3, 4), (1,)),
    ((4,), (3, 4)),  # A repeats over a leading dim
    ((2, 3, 4), (2, 3, 1)),  # B repeats along the contiguous dim
    ((2, 3, 1), (2, 3, 4)),  # A repeats along the contiguous dim
    ((2, 1, 4), (3, 1)),
    ((5, 1, 3, 1), (1, 4, 1, 2)),
    ((1, 3), (3,)),  # different shapes, nothing repeats
]


class TestBinaryBroadcastGradients:
    @pytest.mark.parametrize("op_type", BINARY)
    @pytest.mark.parametrize("a_shape,b_shape,args,full_b", LEGACY)
    def test_legacy_broadcast(self, op_type, a_shape, b_shape, args, full_b):
        rng = np.random.default_rng(1)
        a, b = values(a_shape, rng), divisor(b_shape, rng)
        dc = values(a_shape, rng)
        da, db = run_gradient(op_type, a, b, dc, full_b=full_b, broadcast=1, **args)
        ea, eb = expected(op_type, a, b, dc, full_b)
        assert_close(da, ea, rtol=1e-4, atol=1e-5, dtype=F32)
        assert_close(db, eb, rtol=1e-4, atol=1e-4, dtype=F32)
        forward = op(op_type, ["A", "B"], ["C"], broadcast=1, **args)
        check_gradient(CPU_OPTION, forward, [a, b], [0, 1])

    @pytest.mark.parametrize("op_type", BINARY)
    @pytest.mark.parametrize("a_shape,b_shape", NUMPY)
    def test_numpy_broadcast(self, op_type, a_shape, b_shape):
        rng = np.random.default_rng(2)
        a, b = values(a_shape, rng), divisor(b_shape, rng)
        dc = values(np.broadcast_shapes(a_shape, b_shape), rng)
        da, db = run_gradient(op_type, a, b, dc)
        ea, eb = expected(op_type, a, b, dc)
        assert_close(da, ea, rtol=1e-4, atol=1e-4, dtype=F32)
        assert_close(db, eb, rtol=1e-4, atol=1e-4, dtype=F32)
        check_gradient(CPU_OPTION, op(op_type, ["A", "B"], ["C"]), [a, b], [0, 1])

    @given(data=st.data(), op_type=st.sampled_from(BINARY + ("Pow",)))
    def test_random_broadcast_shapes(self, data, op_type):
        """Random NumPy-broadcastable pairs (dims dropped on the left or set to 1 on either
        side), large enough that rows span several inner-loop iterations."""
        out = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4), label="out")
        shapes = []
        for _ in range(2):
            lead = data.draw(st.integers(0, len(out)))
            dims = [1 if data.draw(st.booleans()) else n for n in out[lead:]]
            shapes.append(tuple(dims))
        rng = np.random.default_rng(3)
        a_shape, b_shape = shapes
        c_shape = np.broadcast_shapes(a_shape, b_shape)
        if op_type == "Pow":
            a, b = values(a_shape, rng, positive=True), values(b_shape, rng)
            dc = values(c_shape, rng)
            y = (a.astype(np.float64) ** b).astype(F32)
            da, db = run(op("PowGradient", ["dY", "X", "E", "Y"], ["dX", "dE"]), [dc, a, b, y])
            pa = dc * b * a.astype(np.float64) ** (b - 1.0)
            pb = dc * y * np.log(a.astype(np.float64))
            ea = summed_to(np.broadcast_to(pa, c_shape), a_shape)
            eb = summed_to(np.broadcast_to(pb, c_shape), b_shape)
        else:
            a, b = values(a_shape, rng), divisor(b_shape, rng)
            dc = values(c_shape, rng)
            da, db = run_gradient(op_type, a, b, dc)
            ea, eb = expected(op_type, a, b, dc)
        assert_close(da, ea, rtol=1e-4, atol=1e-4, dtype=F32)
        assert_close(db, eb, rtol=1e-4, atol=1e-4, dtype=F32)

    @pytest.mark.parametrize("b_shape", [(), (1,), (1, 1)])
    def test_scalar_b_gets_the_total(self, b_shape):
        rng = np.random.default_rng(4)
        a, b = values((3, 4, 5), rng), divisor(b_shape, rng)
        dc = values((3, 4, 5), rng)
        da, db = run_gradient("Mul", a, b, dc)
        assert db.shape == b_shape
        assert_close(db.reshape(-1)[0], float((dc.astype(np.float64) * a).sum()), rtol=1e-5, atol=1e-4)
        assert_close(da, dc * b, rtol=1e-6)

    def test_empty_output_gives_zero_gradient_for_the_repeated_input(self):
        a, b = np.zeros((0, 3), F32), np.ones(3, F32)
        dc = np.zeros((0, 3), F32)
        da, db = run_gradient("Add", a, b, dc)
        assert da.shape == (0, 3)
        assert_close(db, np.zeros(3), dtype=F32)
        da, db = run_gradient("Mul", a, b, dc, broadcast=1)
        assert_close(db, np.zeros(3), dtype=F32)

    def test_float64(self):
        rng = np.random.default_rng(5)
        a, b = rng.standard_normal((4, 3)), rng.uniform(0.5, 2, (3,))
        dc = rng.standard_normal((4, 3))
        da, db = run_gradient("Div", a, b, dc)
        ea, eb = expected("Div", a, b, dc)
        assert_close(da, ea, rtol=1e-12, dtype=np.float64)
        assert_close(db, eb, rtol=1e-12, dtype=np.float64)

    def test_gradient_runs_again_with_new_inputs(self):
        """Re-binding (new input arrays of a new shape) rebuilds the plan."""
        net = core.Net("grad_rebind")
        net.MulGradient(["dC", "A", "B"], ["dA", "dB"])
        rng = np.random.default_rng(6)
        for shape in [(2, 3), (4, 3), (5, 3)]:
            a, b, dc = values(shape, rng), divisor((3,), rng), values(shape, rng)
            for name, value in (("dC", dc), ("A", a), ("B", b)):
                workspace.FeedBlob(name, value)
            workspace.RunNetOnce(net)
            assert_close(workspace.FetchBlob("dB"), (dc.astype(np.float64) * a).sum(axis=0), rtol=1e-5, atol=1e-5)


class TestPowGradient:
    def test_exponent_argument(self):
        rng = np.random.default_rng(7)
        for shape in [(2, 3), (20, 24)]:  # numba loop, then the NumPy form (>= 256 elements)
            x, dy = values(shape, rng, positive=True), values(shape, rng)
            (dx,) = run(op("PowGradient", ["dY", "X"], ["dX"], exponent=2.5), [dy, x])
            assert_close(dx, dy * 2.5 * x.astype(np.float64) ** 1.5, rtol=1e-5, atol=1e-6, dtype=F32)
            check_gradient(CPU_OPTION, op("Pow", ["X"], ["Y"], exponent=-1.5), [x], 0)

    def test_tensor_exponent_legacy_broadcast(self):
        rng = np.random.default_rng(8)
        x, e = values((2, 3, 4), rng, positive=True), values((3,), rng)
        forward = op("Pow", ["X", "E"], ["Y"], broadcast=1, axis=1)
        check_gradient(CPU_OPTION, forward, [x, e], [0, 1])

    def test_maker_picks_the_form(self):
        grads, g_in = autograd.GradientRegistry.GetGradientForOp(
            op("Pow", ["X"], ["Y"], exponent=3.0), ["Y_grad"])
        assert [list(grads[0].input), list(grads[0].output), g_in] == [["Y_grad", "X"], ["X_grad"], ["X_grad"]]
        grads, g_in = autograd.GradientRegistry.GetGradientForOp(op("Pow", ["X", "E"], ["Y"]), ["Y_grad"])
        assert list(grads[0].input) == ["Y_grad", "X", "E", "Y"] and g_in == ["X_grad", "E_grad"]

    @pytest.mark.parametrize("inputs,outputs,args", [
        (["dY", "X"], ["dX"], {}),  # the argument form needs `exponent`
        (["dY", "X", "E", "Y"], ["dX", "dE"], {"exponent": 2.0}),  # both forms at once
        (["dY", "X", "E"], ["dX", "dE"], {}),
        (["dY", "X", "E", "Y"], ["dX"], {}),
    ])
    def test_bad_forms(self, inputs, outputs, args):
        x = np.ones((2, 2), F32)
        raises(errors.ArgumentError, op("PowGradient", inputs, outputs, **args), [x] * len(inputs), "PowGradient takes")


class TestUnaryGradients:
    CASES = {  # forward op: (expected dX from (X, Y, dY), forward args, positive inputs)
        "Exp": (lambda x, y, dy: dy * y, {}, False),
        "Log": (lambda x, y, dy: dy / x, {}, True),
        "Sqrt": (lambda x, y, dy: 0.5 * dy / y, {}, True),
        "Abs": (lambda x, y, dy: np.sign(x) * dy, {}, False),
        "Sqr": (lambda x, y, dy: 2 * x * dy, {}, False),
        "Negative": (lambda x, y, dy: -dy, {}, False),
        "Clip": (lambda x, y, dy: np.where((y > -0.5) & (y < 0.3), dy, 0), {"min": -0.5, "max": 0.3}, False),
    }

    @pytest.mark.parametrize("shape", [(2, 3), (20, 24)])
    @pytest.mark.parametrize("forward", sorted(CASES))
    def test_gradient_ops(self, forward, shape):
        fn, args, positive = self.CASES[forward]
        rng = np.random.default_rng(9)
        x = values(shape, rng, positive=positive)
        if forward == "Abs":
            x[np.abs(x) < 1e-3] = 0.5
        (y,) = run(op(forward, ["X"], ["Y"], **args), [x])
        dy = values(shape, rng)
        grads, g_in = autograd.GradientRegistry.GetGradientForOp(op(forward, ["X"], ["Y"], **args), ["dY"])
        with workspace.temp_workspace("_unary_grad_"):
            for name, value in (("X", x), ("Y", y), ("dY", dy)):
                workspace.FeedBlob(name, value)
            for g in grads:
                workspace.RunOperatorOnce(g)
            dx = workspace.FetchBlob(g_in[0])
        x64, y64, dy64 = (v.astype(np.float64) for v in (x, y, dy))
        assert_close(dx, fn(x64, y64, dy64), rtol=1e-5, atol=1e-6, dtype=F32)
        check_reference(CPU_OPTION, grads[0], [{"X": x, "Y": y, "dY": dy}[n] for n in grads[0].input])

    @pytest.mark.parametrize("grad_type,positive", [("LogGradient", True), ("SqrtGradient", True),
                                                    ("ClipGradient", False)])
    def test_in_place_on_dy(self, grad_type, positive):
        rng = np.random.default_rng(10)
        for shape in [(2, 3), (20, 24)]:
            t, dy = values(shape, rng, positive=positive), values(shape, rng)
            expected_dx = run(op(grad_type, ["T", "dY"], ["dX"]), [t, dy])[0]
            with workspace.temp_workspace("_inplace_grad_"):
                workspace.FeedBlob("T", t)
                workspace.FeedBlob("dY", dy)
                workspace.RunOperatorOnce(op(grad_type, ["T", "dY"], ["dY"]))
                assert_close(workspace.FetchBlob("dY"), expected_dx, rtol=0, atol=0)

    def test_clip_gradient_is_zero_at_the_bounds(self):
        y = np.array([-1.0, -0.5, 0.0, 0.3, 1.0], F32)
        (dx,) = run(op("ClipGradient", ["Y", "dY"], ["dX"], min=-0.5, max=0.3), [y, np.ones(5, F32)])
        assert_close(dx, [0, 0, 1, 0, 0], dtype=F32)

    def test_abs_gradient_is_zero_at_zero(self):
        (dx,) = run(op("AbsGradient", ["X", "dY"], ["dX"]), [np.array([-2.0, 0.0, 3.0], F32), np.ones(3, F32)])
        assert_close(dx, [-1, 0, 1], dtype=F32)


def _net_gradients(build, feeds, ys):
    """Run a forward net built by ``build(net)`` plus its gradient ops; return the workspace
    values of every blob named in the gradient map (and the map)."""
    net = core.Net("grads")
    build(net)
    grad_map = net.AddGradientOperators(ys)
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(net)
    return {str(k): workspace.FetchBlob(str(v)) for k, v in grad_map.items()}


class TestThroughAutograd:
    def test_in_place_add_with_broadcast(self):
        """Add(A, B) -> A: AddGradient reads A only for its shape, which in place is C's."""
        rng = np.random.default_rng(11)
        a, b, seed = values((2, 3), rng), values((3,), rng), values((2, 3), rng)
        grads = _net_gradients(lambda net: net.Add(["A", "B"], "A"), {"A": a, "B": b, "seed": seed},
                               {"A": "seed"})
        assert_close(workspace.FetchBlob("A"), a + b)
        assert_close(grads["A"], seed)
        assert_close(grads["B"], seed.sum(axis=0), rtol=1e-6)

    def test_in_place_add_legacy_axis_seeded_with_ones(self):
        rng = np.random.default_rng(12)
        a, b = values((2, 3, 4), rng), values((3,), rng)
        grads = _net_gradients(lambda net: net.Add(["A", "B"], "A", broadcast=1, axis=1), {"A": a, "B": b}, ["A"])
        assert_close(grads["A"], np.ones((2, 3, 4)), dtype=F32)
        assert_close(grads["B"], np.full(3, 8.0), dtype=F32)

    def test_in_place_div_uses_the_output(self):
        """DivGradient reads C, not A, so Div(A, B) -> A still differentiates."""
        rng = np.random.default_rng(13)
        a, b, seed = values((2, 3), rng), divisor((3,), rng), values((2, 3), rng)
        grads = _net_gradients(lambda net: net.Div(["A", "B"], "A"), {"A": a, "B": b, "seed": seed},
                               {"A": "seed"})
        ea, eb = expected("Div", a, b, seed)
        assert_close(grads["A"], ea, rtol=1e-5)
        assert_close(grads["B"], eb, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("forward,inputs,output", [
        ("Mul", ["A", "B"], "A"), ("Mul", ["A", "B"], "B"), ("Div", ["A", "B"], "B"), ("Pow", ["A", "B"], "A"),
        ("Log", ["A"], "A"), ("Abs", ["A"], "A"), ("Sqr", ["A"], "A"),
    ])
    def test_in_place_op_whose_gradient_needs_the_overwritten_input_is_refused(self, forward, inputs, output):
        net = core.Net("refused")
        getattr(net, forward)(inputs, output)
        with pytest.raises(autograd.GradientError, match="overwrites in place"):
            net.AddGradientOperators([output])

    def test_pow_with_exponent_argument_in_place_is_refused(self):
        net = core.Net("refused_pow")
        net.Pow(["A"], "A", exponent=2.0)
        with pytest.raises(autograd.GradientError, match="overwrites in place"):
            net.AddGradientOperators(["A"])

    def test_same_blob_for_both_operands(self):
        """Mul(X, X): the two partial gradients are summed into X_grad (2 X dY)."""
        rng = np.random.default_rng(14)
        x, seed = values((3, 2), rng), values((3, 2), rng)
        grads = _net_gradients(lambda net: net.Mul(["X", "X"], "Y"), {"X": x, "seed": seed}, {"Y": "seed"})
        assert_close(grads["X"], 2 * x * seed, rtol=1e-6)

    def test_chain_with_broadcast_and_unary_ops(self):
        """Y = Exp(Mul(Sub(A, B), s)) with B (3,) and s scalar; compare with NumPy."""
        rng = np.random.default_rng(15)
        a, b, s, seed = values((4, 3), rng), values((3,), rng), values((1,), rng), values((4, 3), rng)

        def build(net):
            net.Sub(["A", "B"], "D")
            net.Mul(["D", "S"], "M")
            net.Exp(["M"], "Y")

        grads = _net_gradients(build, {"A": a, "B": b, "S": s, "seed": seed}, {"Y": "seed"})
        d = a.astype(np.float64) - b
        y = np.exp(d * s)
        dm = seed * y
        assert_close(grads["A"], dm * s, rtol=1e-5, atol=1e-6)
        assert_close(grads["B"], -(dm * s).sum(axis=0), rtol=1e-5, atol=1e-5)
        assert_close(grads["S"], [(dm * d).sum()], rtol=1e-5, atol=1e-5)


class TestGradientOpErrors:
    def test_dc_must_have_the_forward_output_shape(self):
        x = np.ones((2, 3), F32)
        raises(errors.ShapeError, gradient_op("Add"), [np.ones((3, 3), F32), x, np.ones(3, F32)],
               "forward output's shape (2, 3)")

    def test_shapes_must_broadcast(self):
        raises(errors.ShapeError, gradient_op("Mul"), [np.ones((2, 3), F32)] * 2 + [np.ones(4, F32)],
               "do not broadcast")

    def test_legacy_rule_is_checked(self):
        inputs = [np.ones((2, 3), F32), np.ones((2, 3), F32), np.ones(3, F32)]
        raises(errors.ShapeError, gradient_op("Sub", broadcast=1, axis=0), inputs, "broadcast=1")

    def test_unary_gradient_shapes_must_match(self):
        raises(errors.ShapeError, op("ExpGradient", ["Y", "dY"], ["dX"]), [np.ones(3, F32), np.ones(4, F32)],
               "same shape")


# ----------------------------------------------------------------------------- CUDA

# Under the simulator ROW_THREADS is 8: targets with >= 8 terms (and < 4096 elements) take the
# block-per-target reduction, the others the thread-per-target one; both appear below.
CUDA_BROADCAST = [((2, 3, 4), (), {}), ((3, 1), (1, 4), {}), ((16, 3), (3,), {}), ((2, 3, 4), (2, 3, 1), {}),
                  ((2, 1, 4), (3, 1), {}), ((4,), (3, 4), {}), ((2, 3, 4, 2), (3, 4), {"broadcast": 1, "axis": 1}),
                  ((0, 3), (3,), {}), ((2, 3), (2, 3), {})]


@pytest.mark.cuda
class TestCUDA:
    @pytest.mark.parametrize("op_type", BINARY + ("Pow",))
    @pytest.mark.parametrize("a_shape,b_shape,args", CUDA_BROADCAST)
    def test_binary_gradients_match_cpu(self, dc, op_type, a_shape, b_shape, args):
        rng = np.random.default_rng(16)
        c_shape = a_shape if args.get("broadcast") else np.broadcast_shapes(a_shape, b_shape)
        full_b = (3, 4, 1) if args.get("broadcast") else b_shape
        grad = values(c_shape, rng)
        if op_type == "Pow":
            a, b = values(a_shape, rng, positive=True), values(b_shape, rng)
            y = (a ** b.reshape(full_b)).astype(F32)
            grad_op = op("PowGradient", ["dY", "X", "E", "Y"], ["dX", "dE"], **args)
            inputs = [grad, a, b, y]
        else:
            a, b = values(a_shape, rng), divisor(b_shape, rng)
            grad_op = gradient_op(op_type, **args)
            inputs = [grad, a, b] + ([(a / b.reshape(full_b)).astype(F32)] if op_type == "Div" else [])
        check_devices(dc, grad_op, inputs, threshold=1e-4, atol=1e-5)

    @pytest.mark.parametrize("forward,args,positive", [
        ("Exp", {}, False), ("Log", {}, True), ("Sqrt", {}, True), ("Abs", {}, False), ("Sqr", {}, False),
        ("Clip", {"min": -0.5, "max": 0.3}, False), ("Pow", {"exponent": 2.5}, True)])
    def test_unary_gradients_match_cpu(self, dc, forward, args, positive):
        rng = np.random.default_rng(17)
        x = values((3, 4), rng, positive=positive)
        (y,) = run(op(forward, ["X"], ["Y"], **args), [x])
        grads, _ = autograd.GradientRegistry.GetGradientForOp(op(forward, ["X"], ["Y"], **args), ["dY"])
        feeds = {"X": x, "Y": y, "dY": values((3, 4), rng)}
        check_devices(dc, grads[0], [feeds[n] for n in grads[0].input])

    def test_fc_gradient_with_axes(self, dc):
        rng = np.random.default_rng(18)
        x, w = values((2, 3, 4), rng), values((5, 3, 4), rng)
        dy = values((2, 5), rng)
        check_devices(dc, op("FCGradient", ["X", "W", "dY"], ["dW", "db", "dX"]), [x, w, dy])
        x2 = values((17, 3), rng)  # more than one 16-wide tile along M
        check_devices(dc, op("FCGradient", ["X", "W", "dY"], ["dW", "db"]), [x2, values((2, 3), rng),
                                                                             values((17, 2), rng)])

    def test_softmax_gradient_in_place(self, dc):
        rng = np.random.default_rng(19)
        (y,) = run(op("Softmax", ["X"], ["Y"]), [values((3, 5), rng)])
        check_devices(dc, op("SoftmaxGradient", ["Y", "dY"], ["dY"]), [y, values((3, 5), rng)])

    @pytest.mark.parametrize("grad_type,inputs,args", [
        ("SoftmaxWithLossGradient", "plain", {}), ("SoftmaxWithLossGradient", "spatial", {"spatial": 1}),
        ("LabelCrossEntropyGradient", "lce", {})])
    def test_bad_label_raises_on_cuda(self, dc, grad_type, inputs, args):
        p = np.full((3, 4), 0.25, F32)
        if inputs == "plain":
            names, feeds = ["X", "L", "P", "dL"], [p, np.array([0, 7, 1], np.int32), p, np.ones(1, F32)]
        elif inputs == "spatial":
            p4 = np.full((1, 4, 1, 3), 0.25, F32)
            names, feeds = ["X", "L", "P", "dL"], [p4, np.array([[[0, -1, 9]]], np.int32), p4, np.ones(1, F32)]
        else:
            names, feeds = ["X", "L", "dY"], [p, np.array([0, 7, 1], np.int32), np.ones(3, F32)]
        for device in dc:
            raises(errors.ShapeError, op(grad_type, names, ["dX"], **args), feeds, "outside [0, 4)",
                   device_option=device)
