"""ONNX's official backend test suite (onnx.backend.test.BackendTest) run on nbcaffe's ONNX
backend, CPU device: every covered node case plus the covered real (light model zoo),
simple, pytorch-converted and pytorch-operator model cases.  Coverage and exclusions:
tests/onnx/conformance.py; counts: docs/onnx.md.

CUDA: the suite's ``_cuda`` variants are dropped here (a few hundred kernel compilations);
tests/onnx/test_backend_cuda.py runs a selection on the CUDA device instead.
"""

from __future__ import annotations

import os
import tempfile
import unittest
import warnings

import pytest

pytest.importorskip("onnx")

from onnx.backend.test import BackendTest  # noqa: E402

from nbcaffe.onnx.backend import NbcaffeBackend  # noqa: E402
from tests.onnx import conformance  # noqa: E402

# the light models write their generated test data under ONNX_HOME (default ~/.onnx)
os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="nbcaffe_onnx_home_"))

with warnings.catch_warnings():  # the suite's case generators divide by zero on purpose
    warnings.simplefilter("ignore")
    _TABLE = conformance.cases()
    _SUITE = BackendTest(NbcaffeBackend, __name__).test_cases
_CATEGORY_KIND = {f"OnnxBackend{category}Test": kind for kind, category in conformance.KINDS.items()}


def _select(test_cases):
    """Keep the covered CPU cases; mark the covered failures as skipped with their reason."""
    for class_name, cls in test_cases.items():
        kind = _CATEGORY_KIND.get(class_name)
        for attr in [a for a in vars(cls) if a.startswith("test_")]:
            base, _, device = attr.rpartition("_")
            reason = _TABLE.get((kind, base), (None, "not in the suite's case list"))[1] if kind else "unknown kind"
            if device != "cpu" or reason is not None:
                delattr(cls, attr)
            elif base in conformance.EXCLUDES:
                setattr(cls, attr, unittest.skip(conformance.EXCLUDES[base])(getattr(cls, attr)))
        yield class_name, cls


globals().update(dict(_select(_SUITE)))
