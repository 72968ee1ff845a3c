"""Edge cases of the tensor family: Reshape (0 / -1 rules, errors, in place, old_shape),
Flatten, FlattenToVec, Cast (truncation, BOOL, names), Copy/StopGradient and Print.

Reshape expectations are written out from Caffe2's rule (0 copies the input dim at that
index, one -1 is inferred); value checks compare with NumPy.
"""

from __future__ import annotations

import math
import os

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from nbcaffe import core, errors, utils, workspace
from nbcaffe.proto import caffe2_pb2
from nbcaffe.testing import check_devices, check_reference
from nbcaffe.testing import strategies as nst
from tests.ops._util import CPU_OPTION, op, raises, run, run1

T = caffe2_pb2.TensorProto
F32 = np.float32
X234 = np.arange(24, dtype=F32).reshape(2, 3, 4)


class TestReshape:
    @pytest.mark.parametrize("requested,expected", [
        ([4, 6], (4, 6)),
        ([0, -1], (2, 12)),
        ([-1, 0], (8, 3)),
        ([0, 0, -1], (2, 3, 4)),
        ([0, 3, 2, 2], (2, 3, 2, 2)),
        ([-1], (24,)),
        ([0, 4, -1], (2, 4, 3)),
        ([1, -1, 1], (1, 24, 1)),
    ])
    @pytest.mark.parametrize("source", ["argument", "input_int64", "input_int32"])
    def test_zero_and_minus_one(self, requested, expected, source):
        if source == "argument":
            reshape = op("Reshape", ["X"], ["Y", "old"], shape=requested)
            inputs = [X234]
        else:
            reshape = op("Reshape", ["X", "S"], ["Y", "old"])
            inputs = [X234, np.array(requested, np.int64 if source == "input_int64" else np.int32)]
        y, old = run(reshape, inputs)
        assert y.shape == expected
        np.testing.assert_array_equal(y.reshape(-1), X234.reshape(-1))
        assert old.dtype == np.int64
        np.testing.assert_array_equal(old, [2, 3, 4])

    @given(shape=nst.shapes(1, 4, 1, 4), data=st.data())
    def test_minus_one_is_inferred(self, shape, data):
        x = np.arange(math.prod(shape), dtype=F32).reshape(shape)
        keep = data.draw(st.integers(0, len(shape) - 1))
        requested = [0] * keep + [-1]
        expected = tuple(shape[:keep]) + (math.prod(shape[keep:]),)
        check_reference(CPU_OPTION, op("Reshape", ["X"], ["Y", "old"], shape=requested), [x],
                        reference=lambda X: (X.reshape(expected), np.array(shape, np.int64)))

    @pytest.mark.parametrize("requested,fragment", [
        ([-1, -1], "more than one -1"),
        ([5, -1], "24 elements"),
        ([5, 5], "25 elements"),
        ([0, 0, 0, 0], "no dim 3"),
        ([-2, 12], "negative"),
    ])
    def test_errors(self, requested, fragment):
        raises(errors.ShapeError, op("Reshape", ["X"], ["Y"], shape=requested), [X234], fragment, "(2, 3, 4)")

    def test_zero_size_tensors(self):
        x = np.zeros((0, 3), F32)
        assert run1("Reshape", [x], shape=[0, 3, 1]).shape == (0, 3, 1)
        # a 0 always copies the input dim at that index, zero-sized or not
        assert run1("Reshape", [np.zeros((2, 0), F32)], shape=[4, 0]).shape == (4, 0)
        raises(errors.ShapeError, op("Reshape", ["X"], ["Y"], shape=[3, 0]), [x], "(3, 3)", "9 elements")
        # Caffe2 cannot infer a -1 next to a zero-sized dim (the known product is 0)
        raises(errors.ShapeError, op("Reshape", ["X"], ["Y"], shape=[0, -1]), [x], "(0, 3)")

    def test_shape_source_twice_or_never(self):
        raises(errors.ArgumentError, op("Reshape", ["X", "S"], ["Y"], shape=[24]), [X234, np.array([24])], "both")
        raises(errors.ArgumentError, op("Reshape", ["X"], ["Y"]), [X234], "neither")

    @pytest.mark.parametrize("new_shape,fragment", [(np.array([4.0, 6.0], F32), "float32"),
                                                    (np.array([[4, 6]], np.int64), "1-D")])
    def test_bad_new_shape_input(self, new_shape, fragment):
        raises(errors.ShapeError, op("Reshape", ["X", "S"], ["Y"]), [X234, new_shape], fragment)

    @pytest.mark.parametrize("outputs", [["X"], ["X", "old"]])
    def test_in_place(self, outputs):
        results = run(op("Reshape", ["X"], outputs, shape=[6, -1]), [X234])
        np.testing.assert_array_equal(results[0], X234.reshape(6, 4))
        if len(outputs) == 2:
            np.testing.assert_array_equal(results[1], [2, 3, 4])

    def test_in_place_then_reuse_in_a_net(self):
        net = core.Net("reshape_in_place")
        net.Reshape(["X"], ["X", "old"], shape=[0, -1])
        net.Scale(["X"], ["Y"], scale=2.0)
        workspace.FeedBlob("X", X234)
        workspace.CreateNet(net)
        workspace.RunNet("reshape_in_place")
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), 2 * X234.reshape(2, 12))
        np.testing.assert_array_equal(workspace.FetchBlob("old"), [2, 3, 4])
        workspace.FeedBlob("X", X234 + 1)  # re-fed: reshaped again from the new array
        workspace.RunNet("reshape_in_place")
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), 2 * (X234 + 1).reshape(2, 12))

    def test_out_of_place_output_is_not_a_view(self):
        """Reshape copies unless in place: later writes to the input blob leave the output alone."""
        net = core.Net("reshape_copy")
        net.Reshape(["X"], ["Y"], shape=[-1])
        net.Scale(["X"], ["X"], scale=10.0)
        workspace.FeedBlob("X", X234)
        workspace.RunNetOnce(net)
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), X234.reshape(-1))
        np.testing.assert_array_equal(workspace.FetchBlob("X"), X234 * 10)

    def test_keeps_dtype(self):
        for dtype in [np.int32, np.int64, np.float64, np.bool_, np.uint8]:
            x = np.arange(6).astype(dtype).reshape(2, 3)
            y = run1("Reshape", [x], shape=[3, 2])
            assert y.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(y, x.reshape(3, 2))


class TestFlatten:
    @pytest.mark.parametrize("axis,expected", [(0, (1, 24)), (1, (2, 12)), (2, (6, 4)), (3, (24, 1))])
    def test_axis(self, axis, expected):
        out = run1("Flatten", [X234], axis=axis)
        assert out.shape == expected
        np.testing.assert_array_equal(out.reshape(-1), X234.reshape(-1))

    def test_default_axis_and_in_place(self):
        x = np.arange(30, dtype=np.float64).reshape(2, 3, 5)
        np.testing.assert_array_equal(run1("Flatten", [x]), x.reshape(2, 15))
        np.testing.assert_array_equal(run(op("Flatten", ["X"], ["X"], axis=2), [x])[0], x.reshape(6, 5))

    @pytest.mark.parametrize("axis", [4, -1])
    def test_axis_out_of_range(self, axis):
        raises(errors.ShapeError, op("Flatten", ["X"], ["Y"], axis=axis), [X234], f"axis={axis}")

    def test_empty(self):
        assert run1("Flatten", [np.zeros((2, 0, 3), F32)]).shape == (2, 0)
        assert run1("Flatten", [np.zeros((0, 4), F32)], axis=2).shape == (0, 1)

    @pytest.mark.parametrize("shape", [(2, 3, 4), (5,), (), (0, 3)])
    def test_flatten_to_vec(self, shape):
        x = np.arange(math.prod(shape), dtype=np.int32).reshape(shape)
        out = run1("FlattenToVec", [x])
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, x.reshape(-1))


class TestCast:
    @given(x=nst.shapes(1, 3).flatmap(lambda s: hnp.arrays(F32, s, elements=st.floats(-1000, 1000, width=32))),
           to=st.sampled_from([(T.INT32, np.int32), (T.INT64, np.int64), (T.INT16, np.int16)]))
    def test_float_to_int_truncates_toward_zero(self, x, to):
        code, dtype = to
        out = run1("Cast", [x], to=code)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.trunc(x).astype(dtype))

    def test_explicit_truncation_values(self):
        x = np.array([-2.7, -1.0, -0.5, -0.0, 0.4, 0.99, 1.0, 3.5], np.float64)
        np.testing.assert_array_equal(run1("Cast", [x], to=T.INT32), [-2, -1, 0, 0, 0, 0, 1, 3])

    @pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
    def test_to_bool_is_nonzero(self, dtype):
        values = [-2.5, -0.0, 0.0, 0.25, 7.0, np.nan] if np.dtype(dtype).kind == "f" else [-3, 0, 1, 0, 9]
        x = np.array(values, dtype)
        out = run1("Cast", [x], to=T.BOOL)
        assert out.dtype == np.bool_
        np.testing.assert_array_equal(out, x != 0)

    @pytest.mark.parametrize("x,to,expected", [
        (np.array([True, False, True]), T.FLOAT, np.array([1.0, 0.0, 1.0], F32)),
        (np.array([True, False]), T.INT32, np.array([1, 0], np.int32)),
        (np.array([-3, 0, 2 ** 20], np.int32), T.FLOAT, np.array([-3.0, 0.0, 2.0 ** 20], F32)),
        (np.array([2 ** 40, -5], np.int64), T.DOUBLE, np.array([2.0 ** 40, -5.0])),
        (np.array([0.1, 1e-3], np.float64), T.FLOAT, np.array([0.1, 1e-3], F32)),
        (np.array([300, -1], np.int32), T.INT64, np.array([300, -1], np.int64)),
    ])
    def test_other_conversions(self, x, to, expected):
        out = run1("Cast", [x], to=to)
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)

    @pytest.mark.parametrize("name,dtype", [("INT32", np.int32), ("int32", np.int32), ("float", np.float32),
                                            ("DOUBLE", np.float64), ("bool", np.bool_)])
    def test_to_by_name(self, name, dtype):
        x = np.array([1.5, -2.5, 0.0], F32)
        out = run1("Cast", [x], to=name)
        assert out.dtype == np.dtype(dtype)
        if dtype == np.bool_:
            expected = x != 0
        elif np.dtype(dtype).kind == "i":
            expected = np.trunc(x).astype(dtype)
        else:
            expected = x.astype(dtype)
        np.testing.assert_array_equal(out, expected)

    def test_empty(self):
        out = run1("Cast", [np.zeros((0, 2), F32)], to=T.INT64)
        assert out.shape == (0, 2) and out.dtype == np.int64

    @pytest.mark.parametrize("args,exc,fragment", [({}, errors.ArgumentError, "'to'"),
                                                   ({"to": "floatt"}, errors.ArgumentError, "floatt"),
                                                   ({"to": T.STRING}, errors.ArgumentError, "STRING")])
    def test_errors(self, args, exc, fragment):
        raises(exc, op("Cast", ["X"], ["Y"], **args), [np.ones(2, F32)], fragment)


class TestCopies:
    @pytest.mark.parametrize("op_type", ["Copy", "StopGradient", "EnsureCPUOutput", "CopyFromCPUInput"])
    def test_copy_values_and_independence(self, op_type):
        net = core.Net(f"copy_{op_type}")
        getattr(net, op_type)(["X"], ["Y"])
        net.Scale(["X"], ["X"], scale=-1.0)
        x = np.arange(6, dtype=np.int64).reshape(2, 3)
        workspace.FeedBlob("X", x)
        workspace.RunNetOnce(net)
        np.testing.assert_array_equal(workspace.FetchBlob("Y"), x)
        np.testing.assert_array_equal(workspace.FetchBlob("X"), -x)

    def test_stop_gradient_in_place(self):
        x = np.array([1.5, -2.0], F32)
        np.testing.assert_array_equal(run(op("StopGradient", ["X"], ["X"]), [x])[0], x)


def printed_values(line):
    """The numbers after the ': ' of a Print line (the order Print shows them in)."""
    body = line.split(": ", 1)[1]
    return [float(v) for v in body.split(",") if v.strip() and not v.strip().startswith("...")]


class TestPrint:
    def test_stdout(self, capsys):
        x = np.array([[1.5, -2.0, 3.0], [4.0, 0.25, -6.0]], F32)
        workspace.FeedBlob("blob", x)
        workspace.RunOperatorOnce(op("Print", ["blob"], []))
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1
        assert "blob" in out[0] and "float32" in out[0] and "2, 3" in out[0]
        assert printed_values(out[0]) == x.reshape(-1).tolist()

    def test_limit(self, capsys):
        workspace.FeedBlob("v", np.arange(10, dtype=np.int32))
        workspace.RunOperatorOnce(op("Print", ["v"], [], limit=3))
        line = capsys.readouterr().out.strip()
        assert printed_values(line) == [0.0, 1.0, 2.0]
        assert "7 more" in line

    def test_every_n(self, capsys):
        net = core.Net("print_every")
        net.Print(["v"], [], every_n=2)
        workspace.FeedBlob("v", np.ones(2, F32))
        workspace.CreateNet(net)
        workspace.RunNet("print_every", num_iter=5)
        assert len(capsys.readouterr().out.strip().splitlines()) == 3  # runs 1, 3 and 5

    def test_to_file_under_root_folder(self, tmp_path, capsys):
        old_root = workspace.RootFolder()
        try:
            workspace.ResetWorkspace(str(tmp_path))
            assert workspace.RootFolder() == str(tmp_path)
            x = np.array([1.0, 2.5], F32)
            workspace.FeedBlob("logged", x)
            workspace.RunOperatorOnce(op("Print", ["logged"], [], to_file=1))
            workspace.RunOperatorOnce(op("Print", ["logged"], [], to_file=1))
            assert capsys.readouterr().out == ""
            path = os.path.join(str(tmp_path), "logged.log")
            with open(path) as handle:
                lines = handle.read().strip().splitlines()
            assert lines and all(printed_values(line) == [1.0, 2.5] for line in lines)
        finally:
            workspace.ResetWorkspace(old_root)

    def test_print_has_no_outputs(self):
        raises(errors.SchemaError, op("Print", ["X"], ["Y"]), [np.ones(2, F32)], "output")


class TestArguments:
    @pytest.mark.parametrize("op_type,bad,good,inputs", [
        ("Reshape", "shpae", "shape", 1), ("Flatten", "axes", "axis", 1), ("Cast", "too", "to", 1),
        ("Print", "limt", "limit", 1), ("Print", "to_fil", "to_file", 1),
    ])
    def test_unknown_argument_suggests(self, op_type, bad, good, inputs):
        args = {bad: 1}
        if op_type == "Cast":
            args["to"] = T.FLOAT
        if op_type == "Reshape":
            args["shape"] = [-1]
        error = raises(errors.ArgumentError, op(op_type, ["X"], [] if op_type == "Print" else ["Y"], **args),
                       [np.ones(2, F32)], f"'{bad}'", "Did you mean")
        assert good in str(error).split("Did you mean")[1]

    @pytest.mark.parametrize("op_type,args", [("Reshape", {"shape": "4,6"}), ("Flatten", {"axis": 1.5}),
                                              ("Print", {"limit": "all"}), ("Reshape", {"shape": [2.5, 3.0]})])
    def test_wrong_argument_type(self, op_type, args):
        raises(errors.ArgumentError, op(op_type, ["X"], [] if op_type == "Print" else ["Y"], **args),
               [np.ones(6, F32)], f"'{next(iter(args))}'")


# ------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
class TestTensorCuda:
    @pytest.mark.parametrize("outputs", [["Y", "old"], ["X", "old"], ["X"]])
    def test_reshape(self, dc, outputs):
        outs = check_devices(dc, op("Reshape", ["X"], outputs, shape=[0, -1]), [X234])
        np.testing.assert_array_equal(outs[1][0], X234.reshape(2, 12))
        if len(outputs) == 2:
            np.testing.assert_array_equal(outs[1][1], [2, 3, 4])

    def test_reshape_from_input_and_errors(self, dc):
        check_devices(dc, op("Reshape", ["X", "S"], ["Y", "old"]), [X234, np.array([-1, 6], np.int64)])
        raises(errors.ShapeError, op("Reshape", ["X"], ["Y"], shape=[5, -1]), [X234], "24 elements",
               device_option=dc[1])

    def test_flatten(self, dc):
        for axis in [0, 2, 3]:
            check_devices(dc, op("Flatten", ["X"], ["Y"], axis=axis), [X234])
        check_devices(dc, op("Flatten", ["X"], ["X"]), [X234])
        check_devices(dc, op("FlattenToVec", ["X"], ["Y"]), [X234])

    @pytest.mark.parametrize("to", [T.INT32, T.INT64, T.BOOL, T.DOUBLE, T.FLOAT])
    def test_cast(self, dc, to):
        x = np.array([[-2.7, -0.5, 0.0], [0.4, 1.9, 3.0]], F32)
        outs = check_devices(dc, op("Cast", ["X"], ["Y"], to=to), [x])
        assert outs[1][0].dtype == utils.dtype_of(to)

    def test_cast_int_to_float_and_bool(self, dc):
        x = np.array([-3, 0, 5], np.int32)
        check_devices(dc, op("Cast", ["X"], ["Y"], to=T.FLOAT), [x])
        check_devices(dc, op("Cast", ["X"], ["Y"], to=T.BOOL), [x])

    def test_copies(self, dc):
        x = np.arange(6, dtype=F32).reshape(2, 3)
        check_devices(dc, op("Copy", ["X"], ["Y"]), [x])
        check_devices(dc, op("StopGradient", ["X"], ["X"]), [x])
        host = run(op("EnsureCPUOutput", ["X"], ["Y"]), [x], device_option=dc[1])[0]
        np.testing.assert_array_equal(host, x)

    def test_print_device_blob(self, dc, capsys):
        x = np.array([1.0, -2.0, 3.5], F32)
        workspace.FeedBlob("gpu_blob", x, dc[1])
        workspace.RunOperatorOnce(op("Print", ["gpu_blob"], [], device_option=dc[1]))
        line = capsys.readouterr().out.strip()
        assert "gpu_blob" in line and printed_values(line) == x.tolist()

