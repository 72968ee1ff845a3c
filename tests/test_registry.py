"""The registry is consistent: schemas, docs, references, kernels and the ops/cuda mirror."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from nbcaffe import registry
from nbcaffe.devices import CPU, CUDA
from tests._paths import REPO


def test_every_op_has_doc_reference_and_cpu_kernel():
    for op_type, record in registry.SCHEMAS.items():
        assert record.doc and len(record.doc.splitlines()[0]) > 5, op_type
        assert callable(record.reference), op_type
        if CPU in record.devices:
            assert (op_type, CPU, "") in registry.KERNELS, f"{op_type}: no CPU kernel"
        assert (op_type, CPU, registry.REFERENCE_ENGINE) in registry.KERNELS, op_type
        assert record.min_inputs <= record.max_inputs and record.min_outputs <= record.max_outputs


def test_gradient_slot_is_declared_for_every_op():
    for op_type, record in registry.SCHEMAS.items():
        assert op_type in registry.GRADIENTS
        g = record.gradient
        assert g is None or g is registry.NOT_YET or callable(g), op_type


def test_kernels_only_for_registered_schemas():
    for (op_type, _device, _engine) in registry.KERNELS:
        assert op_type in registry.SCHEMAS


def test_ops_and_cuda_modules_mirror():
    ops_dir = REPO / "nbcaffe" / "ops"
    cuda_dir = REPO / "nbcaffe" / "cuda"
    families = {p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_")}
    cuda_families = {p.stem for p in cuda_dir.glob("*.py") if not p.stem.startswith("_") and p.stem != "context"}
    assert families == cuda_families
    assert set(importlib.import_module("nbcaffe.ops").FAMILIES) == families


def test_registration_errors_are_clear():
    from nbcaffe import errors
    from nbcaffe.operator import Operator

    with pytest.raises(errors.RegistryError, match="kernel registered before its schema"):
        registry.register_kernel("NoSuchOp", CPU)(lambda: None)
    with pytest.raises(errors.RegistryError, match="registered twice"):
        registry.register_kernel("Relu", CPU)(lambda: None)

    class Undocumented(Operator):
        reference = staticmethod(lambda x: (x,))

    with pytest.raises(errors.RegistryError, match="docstring"):
        registry.register_op(Undocumented)

    class NoReference(Operator):
        """Y = X."""

    with pytest.raises(errors.RegistryError, match="NumPy reference"):
        registry.register_op(NoReference)


def test_import_nbcaffe_does_not_import_numba_cuda():
    code = "import sys, nbcaffe; from nbcaffe import workspace, core, cnn, brew; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.cuda
def test_every_op_with_cuda_in_devices_has_a_cuda_kernel():
    from nbcaffe import dispatch

    dispatch.load_cuda()
    for op_type, record in registry.SCHEMAS.items():
        has = (op_type, CUDA, "") in registry.KERNELS
        assert has == (CUDA in record.devices), f"{op_type}: devices={record.devices}, CUDA kernel={has}"
