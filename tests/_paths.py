"""Where the shared test data lives: ../shared next to the repository root."""

from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"


def shared_data(*parts) -> pathlib.Path:
    """Path under ../shared/testdata, or skip the test saying what is missing."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (clone the project next to its ../shared folder)")
    return path
