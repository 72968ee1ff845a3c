"""Every tutorial notebook executes without error (its own asserts check the numbers), and
notebooks are committed without outputs."""

from __future__ import annotations

import json

import pytest

from tests._paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name}: strip outputs"


def _execute(path, timeout=600):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


# Environment for a shorter run of long tutorials (the notebooks read these variables).
SHORT_RUN = {"04_mnist_lenet.ipynb": {"NBCAFFE_MNIST_ITERS": "200", "NBCAFFE_MNIST_MIN_ACCURACY": "0.94"}}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch):
    for key, value in SHORT_RUN.get(path.name, {}).items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    _execute(path)


@pytest.mark.cuda
@pytest.mark.slow
def test_intro_notebook_runs_its_cuda_section():
    """Under the simulator (or a GPU) the intro's CUDA cell really runs and compares numbers."""
    nb = _execute(REPO / "notebooks" / "01_intro.ipynb")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "CUDA loss" in text
