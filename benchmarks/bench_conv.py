"""Convolution and pooling speed: nbcaffe beside ONNX Runtime and PyTorch in the same run.

    python benchmarks/bench_conv.py                 # everything (a few minutes)
    python benchmarks/bench_conv.py --only fwd      # the issue-#4 forward target only
    python benchmarks/bench_conv.py --rounds 5      # more rounds when the machine is noisy

Forward target (issue #4): Conv 3x3, 64->64, 56x56, batch 8, pad 1, NCHW float32 at >= 0.7x
ONNX Runtime's GFLOP/s.  Backward: ConvGradient and pooling gradients against PyTorch's
autograd kernels for the same shapes, plus the LeNet (MNIST, batch 64) layers.

Method: every framework runs in blocks (at least ``--reps`` calls and 0.25 s; the first
quarter of a block is dropped as warm-up), frameworks alternate block by block for
``--rounds`` rounds with a short pause between blocks (ONNX Runtime's, OpenMP's and
OpenBLAS's threads spin after a call and would otherwise steal the next framework's cores),
and each row reports the median and the best sample over all its blocks, plus the
background CPU load.  The first call of each nbcaffe op (numba compile or cache load, plan, buffers) is
timed apart ("first call").  GFLOP/s counts 2 x multiply-adds of the direct convolution.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import LoadMeter, header  # noqa: E402

from nbcaffe import core, threads, workspace  # noqa: E402


def conv_flops(n, c, m, k, out_hw, group=1):
    kk = k[0] * k[1]
    return 2.0 * n * m * (c // group) * kk * out_hw[0] * out_hw[1]


class Case:
    """A named benchmark row: callables per framework, FLOPs per call."""

    def __init__(self, name, flops, runners, first_call=None):
        self.name = name
        self.flops = flops
        self.runners = runners  # {framework: callable}
        self.first_call = first_call
        self.samples = {k: [] for k in runners}


_COUNTER = [0]


def nbcaffe_runner(op_type, inputs, outputs, **args):
    """A callable running one op through a created net (steady state), and its first-call time."""
    _COUNTER[0] += 1
    prefix = f"b{_COUNTER[0]}_"
    names = [f"{prefix}in{i}" for i in range(len(inputs))]
    for name, value in zip(names, inputs):
        workspace.FeedBlob(name, value)
    net = core.Net(f"{prefix}{op_type}")
    getattr(net, op_type)(names, [f"{prefix}out{j}" for j in range(outputs)], **args)
    workspace.CreateNet(net)
    t0 = time.perf_counter()
    workspace.RunNet(net.Name())
    first = time.perf_counter() - t0
    return (lambda name=net.Name(): workspace.RunNet(name)), first


def ort_conv(x, w, b, pads, strides=(1, 1), group=1, threads=0):
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node("Conv", inputs, ["y"], pads=list(pads), strides=list(strides), group=group,
                            kernel_shape=list(w.shape[2:]))
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if b is not None else [])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {"x": x}
    session.run(None, feeds)
    return lambda: session.run(None, feeds)


def torch_mod():
    try:
        import torch

        return torch
    except ImportError:
        return None


def forward_cases(threads):
    torch = torch_mod()
    rng = np.random.default_rng(0)
    cases = []
    for n, c, m, hw, k, order in ((8, 64, 64, 56, 3, "NCHW"), (1, 64, 64, 56, 3, "NCHW"), (8, 64, 64, 56, 3, "NHWC"),
                                  (8, 64, 256, 56, 1, "NCHW")):
        x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
        w = (rng.standard_normal((m, c, k, k), dtype=np.float32) * 0.05).astype(np.float32)
        b = rng.standard_normal(m, dtype=np.float32)
        pad = k // 2
        flops = conv_flops(n, c, m, (k, k), (hw, hw))
        if order == "NCHW":
            ours, first = nbcaffe_runner("Conv", [x, w, b], 1, kernel=k, pad=pad)
        else:
            ours, first = nbcaffe_runner("Conv", [np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                                  np.ascontiguousarray(w.transpose(0, 2, 3, 1)), b], 1, kernel=k,
                                         pad=pad, order="NHWC")
        runners = {"nbcaffe": ours}
        ort_run = ort_conv(x, w, b, [pad] * 4, threads=threads)
        if ort_run is not None:
            runners["ORT"] = ort_run
        if torch is not None:
            tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            cl_x = tx.contiguous(memory_format=torch.channels_last)
            cl_w = tw.contiguous(memory_format=torch.channels_last)

            def t_nchw(tx=tx, tw=tw, tb=tb, pad=pad):
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

            def t_cl(cl_x=cl_x, cl_w=cl_w, tb=tb, pad=pad):
                with torch.no_grad():
                    torch.nn.functional.conv2d(cl_x, cl_w, tb, padding=pad)

            runners["torch NCHW"] = t_nchw
            runners["torch ch-last"] = t_cl
        name = f"Conv {k}x{k} {c}->{m} {hw}x{hw} b{n} {order}"
        cases.append(Case(name, flops, runners, first))
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    out = np.empty_like(a)
    cases.append(Case("numpy SGEMM 1024^3", 2.0 * 1024 ** 3, {"numpy": lambda: np.dot(a, a, out=out)}))
    return cases


def backward_cases():
    torch = torch_mod()
    rng = np.random.default_rng(1)
    cases = []
    shapes = [("3x3 64->64 56x56 b8", 8, 64, 64, 56, 3, 1), ("LeNet conv1 5x5 1->20 28x28 b64", 64, 1, 20, 28, 5, 0),
              ("LeNet conv2 5x5 20->50 12x12 b64", 64, 20, 50, 12, 5, 0)]
    for label, n, c, m, hw, k, pad in shapes:
        x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
        w = (rng.standard_normal((m, c, k, k), dtype=np.float32) * 0.05).astype(np.float32)
        b = rng.standard_normal(m, dtype=np.float32)
        o = hw + 2 * pad - k + 1
        dy = rng.standard_normal((n, m, o, o), dtype=np.float32)
        flops = conv_flops(n, c, m, (k, k), (o, o))
        fwd, first_f = nbcaffe_runner("Conv", [x, w, b], 1, kernel=k, pad=pad)
        bwd, first_b = nbcaffe_runner("ConvGradient", [x, w, dy], 3, kernel=k, pad=pad)
        runners_f = {"nbcaffe": fwd}
        runners_b = {"nbcaffe": bwd}
        if torch is not None:
            tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))

            def t_fwd(tx=tx, tw=tw, tb=tb, pad=pad):
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

            def t_bwd(tx=tx, tw=tw, tdy=tdy, pad=pad):
                torch.ops.aten.convolution_backward(tdy, tx, tw, [tw.shape[0]], [1, 1], [pad, pad], [1, 1], False,
                                                    [0, 0], 1, [True, True, True])

            runners_f["torch"] = t_fwd
            runners_b["torch"] = t_bwd
        cases.append(Case(f"Conv fwd {label}", flops, runners_f, first_f))
        cases.append(Case(f"ConvGradient {label}", 2 * flops, runners_b, first_b))
    for label, n, c, hw, k, s, op in (("MaxPool 2x2 s2 20ch 24x24 b64", 64, 20, 24, 2, 2, "MaxPool"),
                                      ("MaxPool 2x2 s2 50ch 8x8 b64", 64, 50, 8, 2, 2, "MaxPool"),
                                      ("MaxPool 3x3 s2 p1 64ch 112x112 b8", 8, 64, 112, 3, 2, "MaxPool"),
                                      ("AveragePool 3x3 s2 p1 64ch 112x112 b8", 8, 64, 112, 3, 2, "AveragePool")):
        pad = 1 if k == 3 else 0
        x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
        o = (hw + 2 * pad - k) // s + 1
        y = np.zeros((n, c, o, o), np.float32)
        dy = rng.standard_normal((n, c, o, o), dtype=np.float32)
        fwd, first_f = nbcaffe_runner(op, [x], 1, kernel=k, stride=s, pad=pad)
        bwd, first_b = nbcaffe_runner(op + "Gradient", [x, y, dy], 1, kernel=k, stride=s, pad=pad)
        runners_f = {"nbcaffe": fwd}
        runners_b = {"nbcaffe": bwd}
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_()
            tdy = torch.from_numpy(dy)
            if op == "MaxPool":
                def t_pool(tx=tx, k=k, s=s, pad=pad):
                    return torch.nn.functional.max_pool2d(tx, k, s, pad)
            else:
                def t_pool(tx=tx, k=k, s=s, pad=pad):
                    return torch.nn.functional.avg_pool2d(tx, k, s, pad, count_include_pad=False)

            def t_fwd(t_pool=t_pool):
                with torch.no_grad():
                    t_pool()

            def t_bwd(t_pool=t_pool, tx=tx, tdy=tdy):
                # forward included: PyTorch's max-pool backward needs its saved indices
                torch.autograd.grad(t_pool(), tx, tdy)

            runners_f["torch"] = t_fwd
            runners_b["torch (fwd+bwd)"] = t_bwd
        cases.append(Case(f"{label} fwd", 0.0, runners_f, first_f))
        cases.append(Case(f"{label} bwd", 0.0, runners_b, first_b))
    return cases


def lenet_cases():
    """A LeNet (MNIST tutorial) training step at batch 64: nbcaffe net vs PyTorch eager, and the
    in-net time of each conv/pool op (other ops share the cores: see docs/design.md)."""
    torch = torch_mod()
    from nbcaffe import model_helper, optimizer
    from nbcaffe.models.lenet import lenet

    rng = np.random.default_rng(2)
    batch = 64
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, batch).astype(np.int32)
    workspace.FeedBlob("lenet_data", x)
    workspace.FeedBlob("lenet_label", labels)
    model = model_helper.ModelHelper(name="bench_lenet")
    softmax = lenet(model, "lenet_data")
    xent = model.net.LabelCrossEntropy([softmax, "lenet_label"], "lenet_xent")
    loss = model.net.AveragedLoss(xent, "lenet_loss")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.01, momentum=0.9)
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    t0 = time.perf_counter()
    workspace.RunNet(model.net.Name())
    first = time.perf_counter() - t0
    runners = {"nbcaffe": lambda: workspace.RunNet(model.net.Name())}
    if torch is not None:
        nn = torch.nn

        class LeNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.c2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
                self.f3, self.f4 = nn.Linear(800, 500), nn.Linear(500, 10)

            def forward(self, v):
                v = torch.max_pool2d(self.c2(torch.max_pool2d(self.c1(v), 2, 2)), 2, 2)
                return self.f4(torch.relu(self.f3(v.flatten(1))))

        net = LeNet()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

        def step():
            opt.zero_grad()
            nn.functional.cross_entropy(net(tx), ty).backward()
            opt.step()

        runners["torch eager"] = step
    return [Case("LeNet train step b64", 0.0, runners, first)], model


def lenet_breakdown(model, repeats=30):
    """Median in-net time per conv/pool op of the LeNet step (ops run in net order)."""
    instance = workspace.current().nets[model.net.Name()]
    times = {}
    for _ in range(repeats):
        for op in instance.ops:
            t0 = time.perf_counter()
            op.run()
            times.setdefault((op.index, op.type), []).append(time.perf_counter() - t0)
    total = sum(statistics.median(v) for v in times.values())
    print(f"# in-net medians (sum over all {len(times)} ops {total * 1e3:.2f} ms):")
    for (index, op_type), samples in times.items():
        if "Conv" in op_type or "Pool" in op_type:
            print(f"#   op {index:2d} {op_type:18s} {statistics.median(samples) * 1e3:7.2f} ms")


def measure(cases, rounds, reps, pause, block_seconds=0.25):
    """Blocks of at least ``reps`` calls and ``block_seconds``; the first quarter of each block
    (clock ramp-up after the pause, wake-up of thread pools) is discarded."""
    counts = {}
    for case in cases:
        for key, run in case.runners.items():
            run()  # warm (and compile)
            t0 = time.perf_counter()
            run()
            counts[(case.name, key)] = max(reps, int(block_seconds / max(time.perf_counter() - t0, 1e-6)))
    for _ in range(rounds):
        for case in cases:
            for key, run in case.runners.items():
                time.sleep(pause)
                n = counts[(case.name, key)]
                block = []
                for _ in range(n + n // 3):
                    t0 = time.perf_counter()
                    run()
                    block.append(time.perf_counter() - t0)
                case.samples[key].extend(block[n // 3:])


def report(cases, ref="ORT"):
    print(f"{'case':44s} {'framework':16s} {'median ms':>10s} {'best ms':>9s} {'GFLOP/s med':>11s} {'best':>7s}"
          f" {'vs ' + ref:>8s}  first call")
    for case in cases:
        base = case.samples.get(ref) or case.samples.get("torch") or case.samples.get("torch ch-last")
        base_med = statistics.median(base) if base else None
        for key, samples in case.samples.items():
            med, best = statistics.median(samples), min(samples)
            gf = f"{case.flops / med / 1e9:11.1f} {case.flops / best / 1e9:7.1f}" if case.flops else " " * 19
            ratio = f"{base_med / med:8.2f}" if base_med else ""
            first = f"  {case.first_call * 1e3:.0f} ms" if key == "nbcaffe" and case.first_call is not None else ""
            print(f"{case.name:44s} {key:16s} {med * 1e3:10.2f} {best * 1e3:9.2f} {gf} {ratio}{first}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fwd", "bwd", "lenet", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between blocks (lets spinning threads sleep)")
    parser.add_argument("--ort-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    args = parser.parse_args(argv)
    from nbcaffe.ops import _conv_pool

    print(header())
    print(f"# nbcaffe conv threads: {_conv_pool.num_threads()}; OpenBLAS control: {threads.blas_libraries()}")
    if args.only in ("fwd", "all"):
        cases = forward_cases(args.ort_threads)
        with LoadMeter() as meter:
            measure(cases, args.rounds, args.reps, args.pause)
        print("\n## forward (ratio = ORT median / framework median; > 1 is faster than ORT)")
        report(cases, "ORT")
        print(f"# background load during the forward rows: {meter.background:.2f}")
    if args.only in ("bwd", "all"):
        cases = backward_cases()
        with LoadMeter() as meter:
            measure(cases, args.rounds, args.reps, args.pause)
        print("\n## backward and LeNet layers (ratio = torch median / framework median)")
        report(cases, "torch")
        print(f"# background load during the backward rows: {meter.background:.2f}")
    if args.only in ("lenet", "all"):
        cases, model = lenet_cases()
        with LoadMeter() as meter:
            measure(cases, args.rounds, args.reps, args.pause)
        print("\n## LeNet training step, batch 64 (momentum SGD; ratio = torch median / nbcaffe median)")
        report(cases, "torch eager")
        lenet_breakdown(model)
        print(f"# background load during the LeNet rows: {meter.background:.2f}")


if __name__ == "__main__":
    main()
