"""Per-op kernel benchmark: first-call (compile) time and steady-state time, per device,
each beside a NumPy baseline measured in the same run.

    python benchmarks/bench_ops.py [--device cpu|cuda|both] [--ops Relu,FC,...] [--scale 1.0]

Steady state is the median of RunNet over a one-op net (so runner overhead is included,
as users see it); "first" is the first RunNet in this process, i.e. JIT compile plus one
run (a warm numba cache makes it small).  CUDA numbers are only meaningful on a real GPU:
under NUMBA_ENABLE_CUDASIM=1 the script refuses unless --allow-sim is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import LoadMeter, header, median_time  # noqa: E402

from nbcaffe import core, workspace  # noqa: E402
from nbcaffe.proto import caffe2_pb2  # noqa: E402


def cases(scale):
    """op -> (inputs, args, numpy baseline, flops or None)."""
    r = np.random.default_rng(0)
    n = max(1, int(1_000_000 * scale))
    x = r.standard_normal(n).astype(np.float32)
    y = r.standard_normal(n).astype(np.float32)
    m, k, nn = max(1, int(256 * scale ** 0.5)), 1024, 1024
    X = r.standard_normal((m, k)).astype(np.float32)
    W = r.standard_normal((nn, k)).astype(np.float32)
    b = r.standard_normal(nn).astype(np.float32)
    rows, cols = max(1, int(1024 * scale)), 1000
    logits = r.standard_normal((rows, cols)).astype(np.float32)
    labels = r.integers(0, cols, rows).astype(np.int32)
    return {
        "Relu": ([x], {}, lambda: np.maximum(x, 0), None),
        "Sigmoid": ([x], {}, lambda: 1 / (1 + np.exp(-x)), None),
        "Tanh": ([x], {}, lambda: np.tanh(x), None),
        "Add": ([x, y], {}, lambda: x + y, None),
        "Mul": ([x, y], {}, lambda: x * y, None),
        "Add(broadcast)": ([x.reshape(-1, 1000)[: max(1, n // 1000)], y[:1000]], {"broadcast": 1},
                           lambda: x.reshape(-1, 1000)[: max(1, n // 1000)] + y[:1000], None),
        "Sum(3)": ([x, y, x], {}, lambda: x + y + x, None),
        "Scale": ([x], {"scale": 0.5}, lambda: x * np.float32(0.5), None),
        "FC": ([X, W, b], {}, lambda: X @ W.T + b, 2.0 * m * k * nn),
        "Softmax": ([logits], {}, lambda: _np_softmax(logits), None),
        "SoftmaxWithLoss": ([logits, labels], {}, lambda: _np_softmax(logits), None),
        "AveragedLoss": ([x], {}, lambda: x.mean(), None),
        "GaussianFill": ([], {"shape": [n]}, lambda: np.random.default_rng().standard_normal(n, np.float32), None),
        "ConstantFill": ([], {"shape": [n], "value": 1.0}, lambda: np.full(n, 1.0, np.float32), None),
    }


def _np_softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def n_outputs(op_type):
    return 2 if op_type == "SoftmaxWithLoss" else 1


def bench(op_label, spec, device):
    inputs, args, _baseline, _flops = spec
    op_type = op_label.split("(")[0]
    workspace.ResetWorkspace()
    names = [f"in{i}" for i in range(len(inputs))]
    for name, value in zip(names, inputs):
        workspace.FeedBlob(name, value, device)
    net = core.Net(f"bench_{op_label}_{device.device_type}")
    with core.DeviceScope(device):
        getattr(net, op_type)(names, [f"out{j}" for j in range(n_outputs(op_type))], **args)
    workspace.CreateNet(net)
    sync = _sync(device)
    t0 = time.perf_counter()
    workspace.RunNet(net)
    sync()
    first = time.perf_counter() - t0

    def run():
        workspace.RunNet(net)
        sync()

    med, _best = median_time(run, repeats=7, number=3)
    return first, med


def _sync(device):
    if device.device_type == caffe2_pb2.CUDA:
        from numba import cuda

        return cuda.synchronize
    return lambda: None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "both"])
    parser.add_argument("--ops", default=None, help="comma-separated subset")
    parser.add_argument("--scale", type=float, default=1.0, help="problem-size multiplier")
    parser.add_argument("--allow-sim", action="store_true")
    args = parser.parse_args(argv)
    devices = []
    if args.device in ("cpu", "both"):
        devices.append(core.DeviceOption(caffe2_pb2.CPU))
    if args.device in ("cuda", "both"):
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and not args.allow_sim:
            sys.exit("refusing to time CUDA under the simulator (pass --allow-sim to run it anyway)")
        if not workspace.has_gpu_support:
            sys.exit("no CUDA device available")
        devices.append(core.DeviceOption(caffe2_pb2.CUDA, 0))
    table = cases(args.scale)
    chosen = args.ops.split(",") if args.ops else list(table)
    print(header())
    print(f"{'op':18s} {'device':7s} {'first call s':>12s} {'steady ms':>10s} {'numpy ms':>9s} {'vs numpy':>9s} "
          f"{'GFLOP/s':>8s}")
    with LoadMeter() as meter:
        for label in chosen:
            spec = table[label]
            np_med, _ = median_time(spec[2], repeats=7, number=3)
            for device in devices:
                # NumPy's 2-thread BLAS leaves a worker spinning ~0.1 s, which would take a core
                # from the op timed next (docs/design.md, "Threads")
                time.sleep(0.2)
                first, med = bench(label, spec, device)
                gflops = f"{spec[3] / med / 1e9:8.1f}" if spec[3] else f"{'':8s}"
                name = "CPU" if device.device_type == caffe2_pb2.CPU else "CUDA"
                print(f"{label:18s} {name:7s} {first:12.3f} {med * 1e3:10.3f} {np_med * 1e3:9.3f} "
                      f"{np_med / med:9.2f} {gflops}")
    print(f"# background load during the run: {meter.background:.2f} (vs numpy > 1 means faster than NumPy)")


if __name__ == "__main__":
    main()
