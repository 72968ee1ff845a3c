"""Data-parallel training throughput: images/s of LeNet and ResNet-20 with 1, 2 (and more,
oversubscribed) MPI ranks, the scaling efficiency, and the time spent in gradient all-reduce.

    python benchmarks/bench_data_parallel.py [--models LeNet ResNet20] [--batch 32] [--ranks 1 2 4]

Every configuration trains with momentum SGD through ``data_parallel_model.Parallelize``
(one CPU replica per rank, batch ``--batch`` per rank, so the global batch grows with the
ranks: weak scaling, as Caffe2's multi-GPU figures).  The baseline runs twice: one rank with
one thread (the pure scaling reference: each of N ranks also gets one core) and one rank with
every thread (what a user gets from one process).  Ranks beyond the core count are flagged
"oversubscribed": they share cores, so they show overhead, not scaling.  A 2-rank run also
measures the MPI all-reduce bandwidth and latency, the inputs of the model for larger clusters
in docs/data-parallel.md.  Needs ``pip install 'nbcaffe[mpi]'`` for more than one rank.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ----------------------------------------------------------------------------- worker


def _world_seconds(workspace, names):
    total, calls, nbytes = 0.0, 0, 0
    for name in names:
        if workspace.HasBlob(name):
            world = workspace.FetchBlob(name)
            total, calls, nbytes = total + world.seconds, calls + world.calls, nbytes + world.nbytes
            world.reset_stats()
    return total, calls, nbytes


def _bandwidth(distributed):
    """All-reduce time of a 4 MiB and a 4 KiB float32 message between the ranks."""
    import numpy as np

    world = distributed.create_world(name="bench_bw")
    out = {}
    for label, n, reps in (("large", 1 << 20, 20), ("small", 1 << 10, 200)):
        buf = np.ones(n, np.float32)
        world.barrier()
        world.allreduce_(buf)
        t0 = time.perf_counter()
        for _ in range(reps):
            world.allreduce_(buf)
        out[label] = {"bytes": buf.nbytes, "seconds": (time.perf_counter() - t0) / reps}
    return out


def worker(args):
    import numpy as np

    from nbcaffe import core, distributed, model_helper, optimizer, threads, workspace
    from nbcaffe import data_parallel_model as dpm
    from nbcaffe.models import MODELS, input_shape

    rank, size = distributed.rank_and_size()
    spec = MODELS[args.model]

    def forward(model, loss_scale):
        probs = spec.build(model, "data", False)
        xent = model.net.LabelCrossEntropy([probs, "label"], "xent")
        loss = model.net.AveragedLoss(xent, "loss")
        return [model.net.Scale(loss, "loss_scaled", scale=loss_scale)]

    core.Net._net_names_used.clear()
    m = model_helper.ModelHelper(name="bench_dp")
    dpm.Parallelize(m, lambda model: None, forward,
                    optimizer_builder_fun=lambda model: optimizer.build_sgd(model, 0.01, momentum=0.9),
                    devices=[0], cpu_device=True, rendezvous=distributed.mpi_rendezvous())
    rng = np.random.default_rng(rank)
    x = rng.standard_normal(input_shape(args.model, args.batch)).astype(np.float32)
    y = rng.integers(0, spec.num_labels, args.batch).astype(np.int32)
    workspace.FeedBlob("cpu_0/data", x)
    workspace.FeedBlob("cpu_0/label", y)
    dpm.RunInitNet(m)
    for _ in range(args.warmup):
        dpm.RunNet(m, 1)
    worlds = ("dpm_allreduce_cw", "dpm_computed_cw")
    _world_seconds(workspace, worlds)
    times = []
    for _ in range(args.steps):
        workspace.FeedBlob("cpu_0/data", x)
        workspace.FeedBlob("cpu_0/label", y)
        t0 = time.perf_counter()
        dpm.RunNet(m, 1)
        times.append(time.perf_counter() - t0)
    sync, calls, nbytes = _world_seconds(workspace, worlds)
    grad_bytes = sum(workspace.FetchBlob(str(g)).nbytes for g in m.param_to_grad.values())
    result = {"model": args.model, "ranks": size, "threads": threads.get_num_threads(), "batch": args.batch,
              "step_s": statistics.median(times), "sync_s": sync / args.steps, "sync_calls": calls // args.steps,
              "grad_bytes": grad_bytes}
    if size > 1 and args.bandwidth:
        result["bandwidth"] = _bandwidth(distributed)
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- launcher


def _busy_share(seconds=1.0):
    """Share of all CPUs busy over ``seconds`` while nothing of ours runs (background load)."""
    def sample():
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def run_config(model, ranks, threads, args):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               NBCAFFE_NUM_THREADS=str(threads), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, __file__, "--worker", "--model", model, "--batch", str(args.batch), "--steps",
               str(args.steps), "--warmup", str(args.warmup)]
    if ranks == 2:
        command.append("--bandwidth")
    if ranks > 1:
        from nbcaffe import distributed

        mpiexec = distributed.mpiexec_path()
        if mpiexec is None or not distributed.mpi_available():
            return None
        command = [mpiexec, "--oversubscribe", "-n", str(ranks)] + command
    before = _busy_share()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{model} with {ranks} rank(s) failed")
    result = json.loads(lines[-1][len("RESULT "):])
    result["background"] = before
    result["load1"] = os.getloadavg()[0]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["LeNet", "ResNet20"])
    parser.add_argument("--batch", type=int, default=32, help="images per rank per step")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, HERE)
    from _common import header

    cores = os.cpu_count() or 1
    print(header())
    print(f"# batch {args.batch} per rank, median of {args.steps} steps after {args.warmup} warm-up; "
          f"'bg' = CPU share used by other processes just before the run")
    print(f"{'model':9} {'ranks':>5} {'thr/rank':>8} {'img/s':>8} {'vs 1x1thr':>9} {'vs 1xall':>8} {'eff.':>6} "
          f"{'sync ms':>8} {'sync %':>6} {'grad MB':>7} {'bg':>5}  note")
    bandwidth = None
    for model in args.models:
        base1 = run_config(model, 1, 1, args)
        base_all = run_config(model, 1, cores, args)
        rows = [(base1, ""), (base_all, "all threads")]
        for ranks in args.ranks:
            if ranks == 1:
                continue
            result = run_config(model, ranks, max(1, cores // ranks), args)
            if result is None:
                print(f"# {ranks} ranks skipped: needs mpi4py and mpiexec (pip install 'nbcaffe[mpi]')")
                continue
            rows.append((result, "OVERSUBSCRIBED" if ranks > cores else ""))
            bandwidth = result.get("bandwidth", bandwidth)
        for result, note in rows:
            ips = result["ranks"] * result["batch"] / result["step_s"]
            ips1 = base1["batch"] / base1["step_s"]
            ips_all = base_all["batch"] / base_all["step_s"]
            speed1, speed_all = ips / ips1, ips / ips_all
            eff = "" if result is base_all else f"{speed1 / result['ranks']:.0%}"
            print(f"{model:9} {result['ranks']:>5} {result['threads']:>8} {ips:8.1f} {speed1:8.2f}x {speed_all:7.2f}x "
                  f"{eff:>6} {result['sync_s'] * 1e3:8.2f} "
                  f"{result['sync_s'] / result['step_s']:6.1%} {result['grad_bytes'] / 1e6:7.2f} "
                  f"{result['background']:5.0%}  {note}")
    if bandwidth:
        large, small = bandwidth["large"], bandwidth["small"]
        print(f"# MPI all-reduce, 2 ranks: {large['bytes'] / 2**20:.0f} MiB in {large['seconds'] * 1e3:.2f} ms "
              f"({large['bytes'] / large['seconds'] / 1e9:.2f} GB/s), {small['bytes'] / 1024:.0f} KiB in "
              f"{small['seconds'] * 1e6:.0f} us")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
