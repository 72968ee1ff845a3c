"""Collective ops on a one-process world, their argument and schema checks, and the
deadline logic of MPI worlds (with a stand-in communicator whose requests never finish).
Multi-process runs are in tests/test_data_parallel_mpi.py."""

from __future__ import annotations

import numpy as np
import pytest

from nbcaffe import core, distributed, errors, workspace


@pytest.fixture(autouse=True)
def _fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def run(op_type, inputs, outputs, **args):
    workspace.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **args))


def test_local_world_collectives():
    run("CreateCommonWorld", [], ["cw"])
    world = workspace.FetchBlob("cw")
    assert isinstance(world, distributed.LocalWorld) and (world.rank, world.size) == (0, 1)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 10, np.float32)
    workspace.FeedBlob("a", a)
    workspace.FeedBlob("b", b)
    run("Allreduce", ["cw", "a", "b"], ["a", "b"])
    np.testing.assert_array_equal(workspace.FetchBlob("a"), a + b)
    np.testing.assert_array_equal(workspace.FetchBlob("b"), a + b)
    workspace.FeedBlob("a", a)
    workspace.FeedBlob("b", b)
    run("Broadcast", ["cw", "a", "b"], ["a", "b"], root=0)
    np.testing.assert_array_equal(workspace.FetchBlob("b"), a)
    run("Allgather", ["cw", "a", "b"], ["g"])
    np.testing.assert_array_equal(workspace.FetchBlob("g"), np.concatenate([a.ravel(), a.ravel()]))
    run("Barrier", ["cw"], [])
    assert world.calls == 4


def test_gloo_engine_falls_back_to_the_default_kernel():
    run("CreateCommonWorld", [], ["cw"], engine="GLOO", transport="tcp", interface="eth0")
    workspace.FeedBlob("x", np.ones(3, np.float32))
    run("Allreduce", ["cw", "x"], ["x"], engine="GLOO", gpu_direct=0)
    np.testing.assert_array_equal(workspace.FetchBlob("x"), np.ones(3, np.float32))


def test_collectives_run_in_place_only():
    run("CreateCommonWorld", [], ["cw"])
    workspace.FeedBlob("x", np.ones(3, np.float32))
    with pytest.raises(errors.SchemaError, match="same blob as input 1"):
        run("Allreduce", ["cw", "x"], ["y"])
    workspace.FeedBlob("z", np.ones(3, np.float32))
    with pytest.raises(errors.SchemaError, match="one output per tensor input"):
        run("Broadcast", ["cw", "x", "z"], ["x"])


def test_mismatched_tensors_are_named():
    run("CreateCommonWorld", [], ["cw"])
    workspace.FeedBlob("x", np.ones(3, np.float32))
    workspace.FeedBlob("y", np.ones(4, np.float32))
    with pytest.raises(errors.ShapeError, match="input 2 'y' is \\(4,\\)"):
        run("Allreduce", ["cw", "x", "y"], ["x", "y"])


def test_input_zero_must_be_a_world():
    workspace.FeedBlob("cw", np.zeros(1, np.float32))
    workspace.FeedBlob("x", np.ones(3, np.float32))
    with pytest.raises(errors.ShapeError, match="common world from CreateCommonWorld"):
        run("Allreduce", ["cw", "x"], ["x"])


def test_world_of_two_outside_mpiexec_says_how_to_launch(monkeypatch):
    for var in distributed._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(distributed.CommunicationError, match="mpiexec -n 2"):
        run("CreateCommonWorld", [], ["cw"], size=2, rank=0)
    with pytest.raises(errors.ArgumentError, match="rank 1"):
        run("CreateCommonWorld", [], ["cw"], size=1, rank=1)


def test_broadcast_root_outside_the_world():
    run("CreateCommonWorld", [], ["cw"])
    workspace.FeedBlob("x", np.ones(3, np.float32))
    with pytest.raises(distributed.CommunicationError, match="root 1"):
        run("Broadcast", ["cw", "x"], ["x"], root=1)


def test_timeout_from_op_argument_and_environment(monkeypatch):
    run("CreateCommonWorld", [], ["cw"], timeout_ms=2500)
    assert workspace.FetchBlob("cw").timeout == 2.5
    monkeypatch.setenv("NBCAFFE_COLLECTIVE_TIMEOUT", "7")
    run("CreateCommonWorld", [], ["cw2"])
    assert workspace.FetchBlob("cw2").timeout == 7.0


class _NeverDone:
    def Test(self):
        return False


class _StuckComm:
    """A communicator whose peers never arrive."""

    def Get_size(self):
        return 2

    def Get_rank(self):
        return 1

    def Ibarrier(self):
        return _NeverDone()


def test_a_collective_past_its_deadline_raises_and_breaks_the_world(monkeypatch):
    monkeypatch.setattr(distributed, "_BROKEN", [])
    world = distributed.MPIWorld(_StuckComm(), timeout=0.2, name="stuck_cw")
    with pytest.raises(distributed.CollectiveTimeoutError, match=r"Barrier on rank 1 of 2 .*'stuck_cw'.* 0.2 s"):
        world.barrier()
    assert distributed._BROKEN
    with pytest.raises(distributed.CommunicationError, match="unusable after an earlier failure"):
        world.barrier()


def test_rendezvous_outside_mpiexec_is_one_shard(monkeypatch):
    for var in distributed._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    r = distributed.mpi_rendezvous(timeout_sec=12)
    assert (r["shard_id"], r["num_shards"], r["timeout_sec"]) == (0, 1, 12.0)
    assert distributed.threads_per_rank() >= 1


@pytest.mark.cuda
def test_cuda_collectives_stage_through_the_host():
    from nbcaffe.devices import CUDA, DeviceOption

    gpu = DeviceOption(CUDA, 0)
    workspace.RunOperatorOnce(core.CreateOperator("CreateCommonWorld", [], ["cw"], device_option=gpu))
    a = np.arange(4, dtype=np.float32)
    workspace.FeedBlob("a", a, device_option=gpu)
    workspace.FeedBlob("b", a * 3, device_option=gpu)
    workspace.RunOperatorOnce(core.CreateOperator("Allreduce", ["cw", "a", "b"], ["a", "b"], device_option=gpu))
    np.testing.assert_array_equal(workspace.FetchBlob("b"), a * 4)
    workspace.RunOperatorOnce(core.CreateOperator("Allgather", ["cw", "a"], ["g"], device_option=gpu))
    np.testing.assert_array_equal(workspace.FetchBlob("g"), a * 4)
