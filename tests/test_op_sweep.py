"""Every registered op, every sample case: NumPy reference, shape inference, REFERENCE
engine, and (marked cuda) CPU vs CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, registry
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.testing import check_devices, check_reference, run_op
from tests.op_samples import HOST_INPUTS, samples

SAMPLES = samples()
CASES = [(op_type, i) for op_type in sorted(SAMPLES) for i in range(len(SAMPLES[op_type]))]


def build(op_type, index, engine=None):
    sample = SAMPLES[op_type][index]
    n_in = len(sample["inputs"])
    outputs = [f"out{j}" for j in range(sample["outputs"])]
    kwargs = dict(sample["args"])
    if engine:
        kwargs["engine"] = engine
    op = core.CreateOperator(op_type, [f"in{i}" for i in range(n_in)], outputs, **kwargs)
    return op, sample["inputs"]


def test_every_registered_op_has_a_sample():
    missing = sorted(set(registry.SCHEMAS) - set(SAMPLES))
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
        if np.asarray(a).dtype == object:
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
