"""Runner overhead: microseconds per op of RunNet on a chain of cheap ops, beside plain NumPy
and a bare Numba call measured in the same run.

    python benchmarks/bench_runner.py [--ops 100] [--iters 2000] [--json out.json]

The net is 100 chained Relu ops on a 1x16 float32 tensor (each op reads the previous op's
output), run with RunNet(name, iters).  Goal of issue #2: <= 2 us/op.
"""

from __future__ import annotations

import argparse
import json
import sys

import numba
import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import LoadMeter, header, median_time  # noqa: E402

from nbcaffe import core, workspace  # noqa: E402


@numba.njit
def _relu_flat(x, y):
    for i in range(x.size):
        y[i] = x[i] if x[i] > 0 else 0.0


def build(n_ops, inplace):
    net = core.Net(f"relu_chain_{'inplace' if inplace else 'chain'}")
    blob = "x0"
    for i in range(n_ops):
        out = blob if inplace else f"x{i + 1}"
        net.Relu(blob, out)
        blob = out
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    n, iters = args.ops, args.iters
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    results = {}
    with LoadMeter() as meter:
        for inplace in (False, True):
            workspace.ResetWorkspace()
            workspace.FeedBlob("x0", x)
            net = build(n, inplace)
            workspace.CreateNet(net)
            workspace.RunNet(net, 10)
            med, best = median_time(lambda net=net: workspace.RunNet(net, iters))
            results["nbcaffe RunNet, in place" if inplace else "nbcaffe RunNet"] = (med, best)

        def numpy_chain():
            y = x
            for _ in range(n):
                y = np.maximum(y, 0)

        buf = np.empty_like(x)

        def numpy_out_chain():
            y = x
            for _ in range(n):
                np.maximum(y, 0, out=buf)
                y = buf

        flat_in, flat_out = x.reshape(-1), np.empty(x.size, np.float32)
        _relu_flat(flat_in, flat_out)

        def numba_chain():
            for _ in range(n):
                _relu_flat(flat_in, flat_out)

        for label, fn in (("numpy np.maximum (allocating)", numpy_chain),
                          ("numpy np.maximum(out=)", numpy_out_chain),
                          ("bare @njit call, preallocated (floor of a dispatch)", numba_chain)):
            med, best = median_time(fn, number=iters // 10)
            results[label] = (med * iters, best * iters)
    print(header())
    print(f"# {n} chained Relu ops on a 1x16 float32 tensor, {iters} iterations per sample, median of 7;"
          f" background load {meter.background:.2f}")
    base = results["numpy np.maximum (allocating)"][0]
    print(f"{'path':55s} {'us/op':>8s} {'best':>8s} {'vs numpy':>9s}")
    rows = []
    for label, (med, best) in results.items():
        per_op, per_op_best = med / (n * iters) * 1e6, best / (n * iters) * 1e6
        rows.append({"path": label, "us_per_op": per_op, "best_us_per_op": per_op_best,
                     "ratio_to_numpy": med / base})
        print(f"{label:55s} {per_op:8.3f} {per_op_best:8.3f} {med / base:9.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"ops": n, "iters": iters, "background": meter.background, "rows": rows}, handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
