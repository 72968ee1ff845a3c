"""Fixtures for the per-family operator tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def dc():
    """[CPU, CUDA:0] device options for the cuda-marked tests (CPU first: the baseline)."""
    from nbcaffe.testing import strategies as nst

    options = nst.device_options()
    if len(options) < 2:
        pytest.skip("CUDA kernels cannot run here")
    return options
