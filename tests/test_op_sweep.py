"""Every registered op, every sample case: NumPy reference, shape inference, REFERENCE
engine, and (marked cuda) CPU vs CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import autograd, core, registry
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.testing import check_devices, check_gradient, check_reference, run_op
from tests.op_samples import GRADIENT_OPTIONS, HOST_INPUTS, samples

SAMPLES = samples()
CASES = [(op_type, i) for op_type in sorted(SAMPLES) for i in range(len(SAMPLES[op_type]))]


def build(op_type, index, engine=None):
    sample = SAMPLES[op_type][index]
    n_in = len(sample["inputs"])
    outputs = [f"out{j}" for j in range(sample["outputs"])]
    for j, i in sample["inplace"].items():
        outputs[j] = f"in{i}"
    kwargs = dict(sample["args"])
    if engine:
        kwargs["engine"] = engine
    op = core.CreateOperator(op_type, [f"in{i}" for i in range(n_in)], outputs, **kwargs)
    return op, sample["inputs"]


def test_every_registered_op_has_a_sample():
    # gradient ops are exercised through their forward op's gradient checks below
    missing = sorted(t for t in set(registry.SCHEMAS) - set(SAMPLES) if not t.endswith("Gradient"))
    assert not missing, f"add sample inputs for these ops to tests/op_samples.py: {missing}"


@pytest.mark.parametrize("op_type,index", [c for c in CASES if CPU in registry.SCHEMAS[c[0]].devices])
def test_reference_and_shape_inference(op_type, index):
    op, inputs = build(op_type, index)
    check_reference(DeviceOption(CPU), op, inputs)


@pytest.mark.parametrize("op_type,index", [c for c in CASES if not registry.SCHEMAS[c[0]].op_class.random])
def test_reference_engine_matches_kernel(op_type, index):
    """engine='REFERENCE' runs the NumPy reference through the normal runner."""
    op, inputs = build(op_type, index, engine="REFERENCE")
    outs = run_op(DeviceOption(CPU), op, inputs)
    expected = check_reference(DeviceOption(CPU), op, inputs, check_shapes=False) if CPU in \
        registry.SCHEMAS[op_type].devices else outs
    for a, b in zip(outs, expected):
        if registry.SCHEMAS[op_type].op_class.opaque_outputs:
            assert type(a) is type(b)
        elif np.asarray(a).dtype == object:
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("op_type,index", CASES)
def test_cpu_matches_cuda(op_type, index):
    record = registry.SCHEMAS[op_type]
    if CUDA not in record.devices:
        pytest.skip(f"{op_type} is CPU-only by design (devices={record.devices})")
    op, inputs = build(op_type, index)
    host = {f"in{i}": DeviceOption(CPU) for i in HOST_INPUTS.get(op_type, ())}
    cuda = DeviceOption(CUDA, 0)
    if CPU not in record.devices:  # GPU-only ops: compare against the reference instead
        check_reference(cuda, op, inputs, input_device_options=host)
        return
    check_devices([DeviceOption(CPU), cuda], op, inputs, input_device_options=host)


def _has_gradient(op_type):
    return autograd.GradientRegistry.maker_for(op_type) is not None


GRADIENT_CASES = [c for c in CASES if registry.SCHEMAS[c[0]].gradient is not registry.NOT_YET
                  and registry.SCHEMAS[c[0]].gradient is not None
                  and c[1] not in GRADIENT_OPTIONS.get(c[0], {}).get("skip_cases", [])
                  and CPU in registry.SCHEMAS[c[0]].devices]


def _gradient_plan(op_type, index):
    op, inputs = build(op_type, index)
    options = GRADIENT_OPTIONS.get(op_type, {})
    wrt = options.get("wrt", [i for i, x in enumerate(inputs) if np.asarray(x).dtype.kind == "f"])
    outputs = options.get("outputs", list(range(len(op.output))))
    return op, inputs, wrt, outputs


def test_every_op_declares_its_gradient():
    """An op either has a gradient maker or says it has none (gradient = None)."""
    missing = sorted(t for t, r in registry.SCHEMAS.items() if r.gradient is registry.NOT_YET)
    assert not missing, f"declare gradient makers (or gradient = None) for: {missing}"


@pytest.mark.parametrize("op_type,index", GRADIENT_CASES)
def test_gradient_matches_finite_differences(op_type, index):
    """float64 directional finite differences of the op vs its emitted gradient ops."""
    op, inputs, wrt, outputs = _gradient_plan(op_type, index)
    check_gradient(DeviceOption(CPU), op, inputs, wrt, outputs)


@pytest.mark.cuda
@pytest.mark.parametrize("op_type,index", [c for c in GRADIENT_CASES if CUDA in registry.SCHEMAS[c[0]].devices])
def test_gradient_ops_cpu_matches_cuda(op_type, index):
    """The gradient ops the maker emits give the same numbers on CUDA as on the CPU."""
    op, inputs, wrt, outputs = _gradient_plan(op_type, index)
    g_output = [f"{name}_grad" if j in outputs else None for j, name in enumerate(op.output)]
    grad_ops, g_input = autograd.GradientRegistry.GetGradientForOp(op, g_output)
    rng = np.random.default_rng(1)
    fwd = run_op(DeviceOption(CPU), op, inputs)
    grads = {g_output[j]: rng.standard_normal(np.shape(fwd[j])).astype(np.asarray(fwd[j]).dtype) for j in outputs}
    results = []
    for device in (DeviceOption(CPU), DeviceOption(CUDA, 0)):
        from nbcaffe import workspace

        with workspace.temp_workspace("_grad_device_check_"):
            for name, value in list(zip(op.input, inputs)) + list(zip(op.output, fwd)) + list(grads.items()):
                workspace.FeedBlob(name, value, device)
            for grad_op in grad_ops:
                dev_op = type(grad_op)()
                dev_op.CopyFrom(grad_op)
                dev_op.device_option.CopyFrom(device)
                workspace.RunOperatorOnce(dev_op)
            results.append([workspace.FetchBlob(g_input[i]) for i in wrt])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
