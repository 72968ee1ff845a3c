"""The committed operator catalogue (docs/operators.md) matches the registry, and the registry
queries (workspace.RegisteredOperators, core.IsOperator) agree with it."""

from __future__ import annotations

import re
import subprocess
import sys

from nbcaffe import core, docs, registry, workspace
from tests._paths import REPO

CATALOGUE = REPO / "docs" / "operators.md"
REGENERATE = "regenerate it with `python -m nbcaffe.docs` (a one-liner) and commit docs/operators.md"


def _catalogue_ops():
    return re.findall(r"^### (\S+)$", CATALOGUE.read_text(), flags=re.M)


def test_committed_catalogue_is_current():
    # a subprocess: generating imports nbcaffe.cuda (to read the CUDA kernels), which this
    # process must not do behind the other tests' backs
    done = subprocess.run([sys.executable, "-m", "nbcaffe.docs", "--check"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, f"docs/operators.md is stale: {REGENERATE}.\n{done.stderr}"


def test_registered_operators_and_is_operator_agree_with_the_catalogue():
    listed = _catalogue_ops()
    assert listed == sorted(listed, key=lambda t: (t.lower(), t))
    registered = workspace.RegisteredOperators()
    assert registered == sorted(registry.SCHEMAS)
    missing, extra = sorted(set(registered) - set(listed)), sorted(set(listed) - set(registered))
    assert not missing and not extra, f"catalogue lacks {missing}, lists unregistered {extra}: {REGENERATE}"
    assert all(core.IsOperator(t) for t in listed)
    assert not core.IsOperator("NoSuchOperator") and not core.IsOperator("relu")


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "operators.md"
    stale.write_text("# Operator catalogue\n\nold\n")
    done = subprocess.run([sys.executable, "-m", "nbcaffe.docs", "--check", "--output", str(stale)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "python -m nbcaffe.docs" in done.stderr
    assert "+Generated from the registry" in done.stderr


def test_catalogue_text_is_machine_independent():
    text = docs.render(note="fallback: declared devices")  # no CUDA import in this process
    assert str(REPO) not in text and not re.search(r" at 0x[0-9a-f]+", text)
    relu = text[text.index("### Relu\n"):text.index("### ReluGradient\n")]
    assert "- **Devices**: CPU, CUDA" in relu and "- **Gradient**: yes: `ReluGradient`" in relu
    assert "| `error_msg` | str | `''` |" in text  # Assert's argument with its default
