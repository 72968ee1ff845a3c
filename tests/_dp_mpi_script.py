"""Run by tests/test_data_parallel_mpi.py as `mpiexec -n 2 python tests/_dp_mpi_script.py MODE OUT_DIR`.

MODE "train": the collectives across ranks, N replicas vs one model on the whole batch (MLP and
LeNet, one and two replicas per rank), and a checkpoint written by rank 0, loaded by every rank
and resumed; each rank writes its measurements to OUT_DIR/rank<r>.json.
MODE "crash": rank 1 raises in the middle of training; "kill": rank 1 is killed (SIGKILL);
"leave": rank 1 stops early and exits normally while rank 0 trains on (a 3 s collective timeout).
MODE "gpu" (under NUMBA_ENABLE_CUDASIM=1): one GPU replica per rank, the MLP equivalence."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

# the repository root instead of tests/ (whose tests/cuda package would shadow NVIDIA's `cuda`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from nbcaffe import core, distributed, workspace  # noqa: E402
from nbcaffe import data_parallel_model as dpm  # noqa: E402
from tests import _dp_common as c  # noqa: E402

B, K = 4, 4  # per-replica batch, steps


def collectives(rank, size):
    workspace.ResetWorkspace()
    workspace.RunOperatorOnce(core.CreateOperator("CreateCommonWorld", [], ["cw"], size=size, rank=rank))
    x = np.arange(6, dtype=np.float32) + 10 * rank
    workspace.FeedBlob("a", x)
    workspace.FeedBlob("b", 2 * x)
    workspace.RunOperatorOnce(core.CreateOperator("Allreduce", ["cw", "a", "b"], ["a", "b"]))
    expect = sum(3 * (np.arange(6, dtype=np.float32) + 10 * r) for r in range(size))
    ok = bool(np.array_equal(workspace.FetchBlob("a"), expect) and np.array_equal(workspace.FetchBlob("b"), expect))
    workspace.FeedBlob("a", x)
    workspace.RunOperatorOnce(core.CreateOperator("Broadcast", ["cw", "a"], ["a"], root=size - 1))
    ok &= bool(np.array_equal(workspace.FetchBlob("a"), np.arange(6, dtype=np.float32) + 10 * (size - 1)))
    workspace.FeedBlob("i", np.array([rank, 7], np.int64))
    workspace.RunOperatorOnce(core.CreateOperator("Allgather", ["cw", "i"], ["g"]))
    ok &= workspace.FetchBlob("g").tolist() == [v for r in range(size) for v in (r, 7)]
    workspace.RunOperatorOnce(core.CreateOperator("Barrier", ["cw"], []))
    return ok


def equivalence(name, devices, rank, size, cpu_device=True, steps=K):
    """Max relative difference between this rank's replicas and the whole-batch model."""
    n = len(devices) * size
    xs, ys = c.batches(name, steps, n * B)
    init = c.initial_params(name)
    workspace.ResetWorkspace()
    ref = c.train_reference(name, xs, ys, init)
    workspace.ResetWorkspace()
    m = c.build_parallel(name, devices, rendezvous=distributed.mpi_rendezvous(), cpu_device=cpu_device)
    c.start_parallel(m, xs[0], ys[0], init, rank, size)
    c.train_parallel(m, xs, ys, rank, size)
    errs = [c.max_relative_error(c.replica_params(m, init, d), ref) for d in devices]
    moved = max(float(np.max(np.abs(ref[k] - init[k]))) for k in ref)
    return {"max_rel_err": max(errs), "moved": moved}


def state(m):
    return {str(b): workspace.FetchBlob(str(b)) for b in sorted(dpm.GetCheckpointParams(m), key=str)}


def checkpoint(rank, size, out_dir):
    name, steps = "LeNet", 6
    xs, ys = c.batches(name, steps, 2 * size * B, seed=5)
    init = c.initial_params(name)
    rendezvous = distributed.mpi_rendezvous()

    def fresh_model():
        workspace.ResetWorkspace()
        return c.build_parallel(name, [0, 1], rendezvous=rendezvous)

    m = fresh_model()
    c.start_parallel(m, xs[0], ys[0], init, rank, size)
    c.train_parallel(m, xs, ys, rank, size)
    uninterrupted = state(m)

    m = fresh_model()
    c.start_parallel(m, xs[0], ys[0], init, rank, size)
    c.train_parallel(m, xs[: steps // 2], ys[: steps // 2], rank, size)
    path = os.path.join(out_dir, "dp_checkpoint.minidb")
    blobs = sorted(str(b) for b in dpm.GetCheckpointParams(m))
    if rank == 0:
        workspace.RunOperatorOnce(core.CreateOperator("Save", blobs, [], db=path, db_type="minidb"))
    dpm.Synchronize(m)  # the file exists before anyone reads it

    m = fresh_model()  # a new start: init, then every rank loads rank 0's checkpoint
    c.feed_shards(m, xs[steps // 2], ys[steps // 2], rank, size)
    dpm.RunInitNet(m)
    workspace.RunOperatorOnce(core.CreateOperator("Load", [], blobs, db=path, db_type="minidb"))
    dpm.FinalizeAfterCheckpoint(m)
    c.train_parallel(m, xs[steps // 2:], ys[steps // 2:], rank, size)
    resumed = state(m)
    same = all(np.array_equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    replicas_agree = all(np.array_equal(workspace.FetchBlob(k), workspace.FetchBlob(k.replace("cpu_0/", "cpu_1/")))
                         for k in uninterrupted if k.startswith("cpu_0/"))
    return {"bit_identical": bool(same), "replicas_agree": bool(replicas_agree), "blobs": len(uninterrupted),
            "iteration": int(resumed["optimizer_iteration"][0])}


def failing(mode, rank, size):
    xs, ys = c.batches("MLP", 6, 2 * size)
    init = c.initial_params("MLP")
    # warm up with a generous deadline (kernels compile on the first steps), then fail under a 3 s one
    for timeout, steps in ((120, 2), (3, 6)):
        workspace.ResetWorkspace()
        m = c.build_parallel("MLP", [0], rendezvous=distributed.mpi_rendezvous(timeout_sec=timeout))
        c.start_parallel(m, xs[0], ys[0], init, rank, size)
        for step in range(steps):
            if timeout == 3 and rank == 1 and step == 2:
                if mode == "crash":
                    raise RuntimeError("rank 1 fails on purpose at step 2")
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                print("rank 1 leaves early on purpose", flush=True)
                return
            c.feed_shards(m, xs[step], ys[step], rank, size)
            dpm.RunNet(m, 1)
    print(f"rank {rank} finished all steps", flush=True)


def main():
    mode, out_dir = sys.argv[1], sys.argv[2]
    rank, size = distributed.rank_and_size()
    if mode == "gpu":  # one GPU per rank (run under NUMBA_ENABLE_CUDASIM=1): staged through the host
        result = {"rank": rank, "MLP_gpu": equivalence("MLP", [0], rank, size, cpu_device=False, steps=2)}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(result, handle)
        return
    if mode != "train":
        failing(mode, rank, size)
        return
    t0 = time.time()
    result = {"rank": rank, "size": size, "collectives": collectives(rank, size)}
    for name in ("MLP", "LeNet"):
        for devices in ([0], [0, 1]):
            result[f"{name}_{len(devices)}"] = equivalence(name, devices, rank, size)
    result["checkpoint"] = checkpoint(rank, size, out_dir)
    result["seconds"] = time.time() - t0
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
