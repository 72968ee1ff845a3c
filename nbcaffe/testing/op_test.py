"""Reference, shape-inference and device checks for single operators.

Every check runs the op in a private workspace (the caller's workspace is untouched), feeds
copies of the inputs and compares host copies of the outputs.  Shape inference is checked
on every reference check and a mismatch *fails* (Caffe2 only logged it).
"""

from __future__ import annotations

import re
import unittest

import numpy as np

from nbcaffe import net as _net
from nbcaffe import registry, utils, workspace
from nbcaffe.devices import CPU, DeviceOption, describe
from nbcaffe.proto import caffe2_pb2
from nbcaffe.testing.gradient_check import directional_check
from nbcaffe.testing.strategies import device_options  # noqa: F401  (re-exported)


def _with_device(op, device_option):
    """A copy of ``op`` placed on ``device_option``; the op's own random_seed is kept."""
    copy = caffe2_pb2.OperatorDef()
    copy.CopyFrom(op)
    if device_option is not None:
        seed = op.device_option.random_seed if op.device_option.HasField("random_seed") else None
        copy.device_option.CopyFrom(device_option)
        if seed is not None and not device_option.HasField("random_seed"):
            copy.device_option.random_seed = seed
    return copy


def run_op(device_option, op, inputs, input_device_options=None, outputs=None):
    """Run ``op`` on ``device_option`` with ``inputs`` fed under the op's input names, in a fresh
    workspace; return host copies of its outputs (or of the named ``outputs``)."""
    op = _with_device(op, device_option)
    input_device_options = input_device_options or {}
    with workspace.temp_workspace("_nbcaffe_op_test_"):
        for name, value in zip(op.input, inputs):
            workspace.FeedBlob(name, value, input_device_options.get(name, device_option))
        workspace.RunOperatorOnce(op)
        names = list(outputs) if outputs is not None else list(op.output)
        return [workspace.FetchBlob(name) for name in names]


def reference_outputs(op, inputs):
    """The schema reference's outputs for ``op`` (arguments parsed exactly as the runner does)."""
    record = registry.get_schema(op.type)
    cpu_op = _with_device(op, DeviceOption(CPU))
    cpu_op.engine = registry.REFERENCE_ENGINE  # exists for every op, GPU-only ones included
    instance = _net.create_operator(cpu_op, workspace.Workspace("_nbcaffe_ref_"))
    kwargs = instance.reference_kwargs()
    return list(record.reference(*[np.array(x, copy=True) for x in inputs], **kwargs))


def inferred_outputs(op, inputs):
    """(shapes, dtypes) that InferShapesAndTypes gives for op's outputs ({} for unknown)."""
    net_def = caffe2_pb2.NetDef(name="_nbcaffe_infer_")
    net_def.op.add().CopyFrom(op)
    dims = {name: list(np.shape(x)) for name, x in zip(op.input, inputs)}
    types = {}
    for name, x in zip(op.input, inputs):
        types[name] = utils.data_type_of(np.asarray(x).dtype)
    shapes, dtypes = workspace.Workspace("_nbcaffe_infer_").infer_shapes_and_types([net_def], dims, types)
    return ({n: tuple(shapes[n]) for n in op.output if n in shapes},
            {n: utils.dtype_of(dtypes[n]) for n in op.output if n in dtypes})


def _compare(name, actual, expected, rtol, atol, where):
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        raise AssertionError(f"{where}: output '{name}' has shape {actual.shape}, expected {expected.shape}")
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{where}: output '{name}' has dtype {actual.dtype}, expected {expected.dtype}")
    if actual.dtype == object or actual.dtype.kind in "SUb":
        if not np.array_equal(actual, expected):
            raise AssertionError(f"{where}: output '{name}' differs: {actual!r} vs {expected!r}")
        return
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{where}: output '{name}'", equal_nan=True)


def check_reference(device_option, op, inputs, reference=None, threshold=1e-4, atol=None, outputs_to_check=None,
                    input_device_options=None, check_shapes=True):
    """Run ``op`` and compare each output with ``reference(*inputs)`` (default: the schema's
    NumPy reference), and with the statically inferred shapes and dtypes.

    Random ops (``schema.random``) are compared on shape and dtype only.  Returns the outputs.
    """
    outputs = run_op(device_option, op, inputs, input_device_options)
    record = registry.get_schema(op.type)
    where = f"{op.type} on {describe(device_option)}"
    expected = list(reference(*inputs)) if reference is not None else reference_outputs(op, inputs)
    indices = range(len(op.output)) if outputs_to_check is None else outputs_to_check
    for i in indices:
        if i >= len(expected):
            raise AssertionError(f"{where}: reference returned {len(expected)} outputs, op has {len(op.output)}")
        if getattr(record.op_class, "opaque_outputs", False):  # non-tensor outputs: same kind of object
            if type(outputs[i]) is not type(expected[i]):
                raise AssertionError(f"{where}: output '{op.output[i]}' is a {type(outputs[i]).__name__}, the"
                                     f" reference gives a {type(expected[i]).__name__}")
            continue
        if record.op_class.random:
            exp = np.asarray(expected[i])
            if outputs[i].shape != exp.shape or outputs[i].dtype != exp.dtype:
                raise AssertionError(f"{where}: random output {outputs[i].shape} {outputs[i].dtype}, reference "
                                     f"{exp.shape} {exp.dtype}")
            continue
        _compare(op.output[i], outputs[i], expected[i], threshold, threshold if atol is None else atol, where)
    if check_shapes and not getattr(record.op_class, "opaque_outputs", False):
        shapes, dtypes = inferred_outputs(op, inputs)
        for name, value in zip(op.output, outputs):
            value = np.asarray(value)
            if name in shapes and tuple(shapes[name]) != value.shape:
                raise AssertionError(f"{where}: shape inference says {shapes[name]} for '{name}' but the op"
                                     f" produced {value.shape}")
            if name in dtypes and dtypes[name] != value.dtype and value.dtype != object:
                raise AssertionError(f"{where}: type inference says {dtypes[name]} for '{name}' but the op"
                                     f" produced {value.dtype}")
    return outputs


def check_devices(device_options_list, op, inputs, outputs_to_check=None, threshold=1e-4, atol=None,
                  input_device_options=None):
    """Run the same op on every device option and compare each device's outputs with the
    first one's (normally the CPU).  Random ops compare shapes and dtypes only."""
    record = registry.get_schema(op.type)
    results = [run_op(d, op, inputs, input_device_options) for d in device_options_list]
    base, base_device = results[0], device_options_list[0]
    indices = range(len(op.output)) if outputs_to_check is None else outputs_to_check
    for device, outs in zip(device_options_list[1:], results[1:]):
        where = f"{op.type}: {describe(device)} vs {describe(base_device)}"
        for i in indices:
            if getattr(record.op_class, "opaque_outputs", False):
                if type(outs[i]) is not type(base[i]):
                    raise AssertionError(f"{where}: output '{op.output[i]}' kinds differ")
                continue
            if record.op_class.random:
                if outs[i].shape != base[i].shape or outs[i].dtype != base[i].dtype:
                    raise AssertionError(f"{where}: output '{op.output[i]}' {outs[i].shape} {outs[i].dtype} vs"
                                         f" {base[i].shape} {base[i].dtype}")
                continue
            _compare(op.output[i], outs[i], base[i], threshold, threshold if atol is None else atol, where)
    return results


def _float64(x):
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind == "f" else x


def check_gradient(device_option, op, inputs, wrt, outputs_with_grads=(0,), rng=None, rtol=1e-4, atol=1e-6,
                   eps=1e-6, input_device_options=None, directions=2):
    """Check the op's gradient ops (from its registered maker) against float64 central
    differences of the op itself along random directions.

    Floating inputs are cast to float64, so kernels must be dtype-generic; ``wrt`` is the
    input index (or a list of them) whose gradient is checked.  Returns the analytic
    gradients of the checked inputs.
    """
    from nbcaffe import autograd

    rng = rng or np.random.default_rng(0)
    xs = [_float64(x) for x in inputs]
    outputs_with_grads = list(outputs_with_grads)
    g_output = [f"{name}_grad" if j in outputs_with_grads else None for j, name in enumerate(op.output)]
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(_with_device(op, device_option), g_output)
    wrt_list = [wrt] if isinstance(wrt, int) else list(wrt)
    for i in wrt_list:
        if g_input[i] is None:
            raise AssertionError(f"{op.type}: the gradient maker gives no gradient for input {i} ('{op.input[i]}')")

    def forward(values):
        outs = run_op(device_option, op, values, input_device_options)
        return [np.asarray(outs[j], dtype=np.float64) for j in outputs_with_grads]

    def backward(values, gys):
        feeds = dict(zip(op.input, values))
        # in-place ops: the gradient needs the forward *outputs*, so run the forward first
        op_dev = _with_device(op, device_option)
        with workspace.temp_workspace("_nbcaffe_grad_check_"):
            for name, value in feeds.items():
                workspace.FeedBlob(name, value, (input_device_options or {}).get(name, device_option))
            workspace.RunOperatorOnce(op_dev)
            for j, gy in zip(outputs_with_grads, gys):
                workspace.FeedBlob(g_output[j], gy.astype(np.float64), device_option)
            for grad_op in grad_ops:
                workspace.RunOperatorOnce(grad_op)
            grads = []
            for i in range(len(op.input)):
                grads.append(workspace.FetchBlob(g_input[i]) if i in wrt_list else None)
        return grads

    analytic = {}
    for i in wrt_list:
        directional_check(forward, backward, xs, i, rng=rng, eps=eps, rtol=rtol, atol=atol, directions=directions)
        analytic[i] = backward(xs, [rng.standard_normal(np.shape(y)) for y in forward(xs)])[i]
    return analytic


class OpTestCase(unittest.TestCase):
    """unittest base with the Caffe2 assertion names and snake_case twins."""

    def assertReferenceChecks(self, device_option, op, inputs, reference=None, threshold=1e-4, atol=None,
                              outputs_to_check=None, input_device_options=None):
        return check_reference(device_option, op, inputs, reference, threshold, atol, outputs_to_check,
                               input_device_options)

    def assertDeviceChecks(self, device_options_list, op, inputs, outputs_to_check=None, threshold=1e-4,
                           atol=None, input_device_options=None):
        return check_devices(device_options_list, op, inputs, outputs_to_check, threshold, atol, input_device_options)

    def assertValidationChecks(self, device_option, op, inputs, validator, as_kwargs=True):
        outputs = run_op(device_option, op, inputs)
        if as_kwargs:
            named = dict(zip(list(op.input) + list(op.output), list(inputs) + list(outputs)))
            validator(**named)
        else:
            validator(inputs=inputs, outputs=outputs)

    def assertRunOpRaises(self, device_option, op, inputs, exception=(Exception,), regexp=None):
        with self.assertRaises(exception) as context:
            run_op(device_option, op, inputs)
        if regexp is not None and not re.search(regexp, str(context.exception)):
            raise AssertionError(f"{type(context.exception).__name__} message does not match {regexp!r}:"
                                 f" {context.exception}")
        return context.exception

    def assertGradientChecks(self, device_option, op, inputs, outputs_to_check, outputs_with_grads, rtol=1e-4,
                             atol=1e-6, input_device_options=None):
        """Caffe2's name: ``outputs_to_check`` is the input index whose gradient is checked."""
        return check_gradient(device_option, op, inputs, outputs_to_check, outputs_with_grads, rtol=rtol, atol=atol,
                              input_device_options=input_device_options)

    assert_gradient = assertGradientChecks
    assert_reference = assertReferenceChecks
    assert_devices = assertDeviceChecks
    assert_validation = assertValidationChecks
    assert_raises_op = assertRunOpRaises
