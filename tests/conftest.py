"""Test configuration: hypothesis profiles, the `cuda` marker, a clean workspace per test.

Hypothesis profile: NBCAFFE_HYPOTHESIS_PROFILE = ci (default: derandomized, 25 examples, so every
run and CI see the same cases) | dev (10 random examples) | thorough (300 random examples).
Every profile has deadline=None: the first example of a test
pays numba's JIT compile.

CUDA tests (marker `cuda`) run when a GPU is present or NUMBA_ENABLE_CUDASIM=1 was set before
Python started; otherwise they are skipped with that reason.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=10, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("NBCAFFE_HYPOTHESIS_PROFILE", "ci"))


def _cuda_state():
    from nbcaffe import dispatch

    return dispatch.cuda_available()


def pytest_report_header(config):
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "0")
    return (f"nbcaffe: NUMBA_ENABLE_CUDASIM={sim}, CUDA kernels runnable: {_cuda_state()}, "
            f"hypothesis profile: {os.environ.get('NBCAFFE_HYPOTHESIS_PROFILE', 'ci')}")


def pytest_collection_modifyitems(config, items):
    if _cuda_state():
        return
    skip = pytest.mark.skip(reason="CUDA kernels cannot run here: no GPU, and NUMBA_ENABLE_CUDASIM=1 was not set "
                                   "before Python started (run: NUMBA_ENABLE_CUDASIM=1 pytest -m cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def clean_workspace():
    """Each test starts in an empty 'default' workspace with no net names taken."""
    from nbcaffe import core, optimizer, workspace

    workspace.SwitchWorkspace("default", True)
    workspace.ResetWorkspace()
    core.Net._net_names_used.clear()
    optimizer._optimizer_instance_count.clear()
    yield
    workspace.SwitchWorkspace("default", True)
    workspace.ResetWorkspace()


@pytest.fixture
def root(tmp_path):
    """The workspace root folder set to tmp_path for the test, restored afterwards."""
    from nbcaffe import workspace

    previous = workspace.RootFolder()
    workspace.ResetWorkspace(str(tmp_path))
    yield tmp_path
    workspace.ResetWorkspace(previous)
