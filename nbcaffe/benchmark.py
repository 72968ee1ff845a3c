"""``nbcaffe-bench`` / ``python -m nbcaffe.benchmark``: time zoo models on CPU and GPU.

Mirrors the flags of Caffe2's ``convnet_benchmarks.py``::

    nbcaffe-bench --model LeNet --batch_size 64 --device both --layer_wise_benchmark --compare torch

prints ms per iteration and images/s per device (``--device both`` side by side with the
speed-up), an optional per-operator table like Caffe2's ``BenchmarkNet`` (time, share,
GFLOP/s), and with ``--compare torch`` the same model run eagerly in PyTorch with the same
weights, in the same process, with the ratio (``--compare onnxruntime``, with
``--forward_only``: the model exported to ONNX and run in ONNX Runtime).  Training mode (the default) times
forward + backward (+ an SGD update with ``--optimizer sgd``); ``--forward_only`` times
inference.  A GPU column that cannot be measured says why.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from nbcaffe import cost, dispatch, model_helper, optimizer, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.models import MODELS, input_shape


def build(name, batch_size, order, forward_only, use_optimizer, device):
    """A ModelHelper for zoo model ``name`` on ``device`` (training ops unless forward_only)."""
    from nbcaffe import core

    with core.DeviceScope(device):
        m = model_helper.ModelHelper(name=f"bench_{name}_{device.device_type}", arg_scope={"order": order})
        softmax = MODELS[name].build(m, "data", is_test=forward_only)
        if not forward_only:
            xent = m.net.LabelCrossEntropy([softmax, "label"], "xent")
            loss = m.net.AveragedLoss(xent, "loss")
            m.AddGradientOperators([loss])
            if use_optimizer:
                optimizer.build_sgd(m, base_learning_rate=0.01, momentum=0.9)
    return m


def gpu_unavailable_reason():
    """Why the GPU column is empty, or None when a real GPU can be timed."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "CUDA simulator active (NUMBA_ENABLE_CUDASIM=1): it checks correctness, it does not time a GPU"
    if not dispatch.cuda_available():
        return "no CUDA device: numba.cuda.is_available() is False on this machine"
    return None


def _progress(iterable, total, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, disable=not sys.stderr.isatty())


def time_device(args, device):
    """Run one device's benchmark; returns (ms per iteration, per-op rows or None)."""
    workspace.ResetWorkspace()
    m = build(args.model, args.batch_size, args.order, args.forward_only, args.optimizer == "sgd", device)
    rng = np.random.default_rng(0)
    workspace.FeedBlob("data", rng.random(input_shape(args.model, args.batch_size, args.order), dtype=np.float32),
                       device)
    workspace.FeedBlob("label", rng.integers(0, MODELS[args.model].num_labels, args.batch_size).astype(np.int32),
                       device)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    name = m.net.Name()
    instance = workspace.current().nets[name]
    t0 = time.perf_counter()
    workspace.RunNet(name)  # first run: JIT compile + allocation, reported apart
    instance._synchronize()
    first = time.perf_counter() - t0
    for _ in _progress(range(args.warmup_iterations), args.warmup_iterations, "warmup"):
        workspace.RunNet(name)
    samples = []
    desc = f"{args.model} {'GPU' if device.device_type else 'CPU'}"
    for _ in _progress(range(args.iterations), args.iterations, desc):
        t0 = time.perf_counter()
        workspace.RunNet(name)
        instance._synchronize()
        samples.append(time.perf_counter() - t0)
    ms = float(np.median(samples)) * 1e3
    rows = None
    if args.layer_wise_benchmark:
        result = instance.benchmark(0, max(1, min(args.iterations, 10)), True)
        rows = []
        for op, op_ms in zip(instance.ops, result[1:]):
            shapes_in = [tuple(getattr(workspace.current().blobs.get(n), "shape", ()) or ()) for n in op.input_names]
            shapes_out = [tuple(getattr(workspace.current().blobs.get(n), "shape", ()) or ()) for n in op.output_names]
            flops = cost.flops(op.op_def, shapes_in, shapes_out)
            rows.append((op.index, op.type, op.output_names[0] if op.output_names else "", op_ms, flops))
    return ms, first, rows, m


def time_torch(args, model):
    """Median ms per iteration of the same model in PyTorch eager (same weights), or a reason."""
    from nbcaffe import peer_torch

    torch = peer_torch.import_torch()
    if torch is None:
        return None, "PyTorch is not installed (pip install -e '.[peer]')"
    if args.order != "NCHW":
        return None, "the PyTorch peer runs NCHW models only"
    torch.set_num_threads(os.cpu_count() or 1)
    params = {str(p): workspace.FetchBlob(p) for p in model.params + model.GetComputedParams()}
    net = peer_torch.TorchNet(model.net.Proto(), params, trainable=[str(p) for p in model.params])
    if net.unsupported:
        return None, f"ops without a PyTorch mapping: {', '.join(net.unsupported)}"
    feeds = {"data": workspace.FetchBlob("data"), "label": workspace.FetchBlob("label")}
    opt = torch.optim.SGD(net.parameters, lr=0.01, momentum=0.9) if args.optimizer == "sgd" else None

    def step():
        if args.forward_only:
            with torch.no_grad():
                net.forward(feeds)
            return
        blobs = net.forward(feeds, training=True)
        for p in net.parameters:
            p.grad = None
        blobs["loss"].backward()
        if opt is not None:
            opt.step()

    # PyTorch's best configuration is the fair peer: on some CPUs its oneDNN convolution is many
    # times slower than its native one (seen on an AVX-512 Xeon: 31 ms vs 2.4 ms for LeNet's
    # conv2), so both are timed and the faster is reported.
    best = None
    for use_onednn in (True, False):
        torch.backends.mkldnn.enabled = use_onednn
        for _ in range(args.warmup_iterations + 1):
            step()
        samples = []
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t0)
        ms = float(np.median(samples)) * 1e3
        if best is None or ms < best[0]:
            best = (ms, use_onednn)
    torch.backends.mkldnn.enabled = True
    return best[0], None if best[1] else "oneDNN off was faster"


def time_onnxruntime(args, model):
    """Median ms per forward pass of the same model (same weights) exported by
    nbcaffe.onnx.frontend and run in ONNX Runtime (CPU provider, default threads), the max
    |difference| of the outputs, or (None, None, reason)."""
    if not args.forward_only:
        return None, None, "ONNX Runtime runs inference only: add --forward_only"
    if args.order != "NCHW":
        return None, None, "the ONNX export runs NCHW models only"
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None, None, "onnx / onnxruntime are not installed (pip install -e '.[onnx]')"
    from nbcaffe.onnx import frontend
    from nbcaffe.predictor import mobile_exporter

    x = workspace.FetchBlob("data")
    init, predict = mobile_exporter.Export(workspace, model.net, model.params + model.GetComputedParams(),
                                           inputs=["data"])
    onnx_model = frontend.caffe2_net_to_onnx_model(predict, init,
                                                   value_info={"data": (onnx.TensorProto.FLOAT, x.shape)})
    session = ort.InferenceSession(onnx_model.SerializeToString(), ort.SessionOptions(),
                                   providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: x}
    out_name = predict.external_output[-1] if predict.external_output else predict.op[-1].output[0]
    theirs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    diff = float(np.abs(theirs[out_name] - workspace.FetchBlob(out_name)).max()) if out_name in theirs else None
    for _ in range(args.warmup_iterations):
        session.run(None, feeds)
    samples = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        session.run(None, feeds)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples)) * 1e3, diff, None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nbcaffe-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="LeNet", choices=sorted(MODELS))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--order", default="NCHW", choices=["NCHW", "NHWC"])
    parser.add_argument("--forward_only", action="store_true")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup_iterations", type=int, default=2)
    parser.add_argument("--layer_wise_benchmark", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "both"])
    parser.add_argument("--compare", default=None, choices=["torch", "onnxruntime"])
    parser.add_argument("--optimizer", default="none", choices=["none", "sgd"],
                        help="training mode: add a momentum-SGD update (Caffe2's benchmark timed forward+backward)")
    args = parser.parse_args(argv)

    mode = "forward" if args.forward_only else "forward+backward" + (" + SGD" if args.optimizer == "sgd" else "")
    print(f"{args.model}, batch {args.batch_size}, {args.order}, {mode}; median of {args.iterations} iterations "
          f"after {args.warmup_iterations} warm-up")
    results = {}
    devices = []
    if args.device in ("cpu", "both"):
        devices.append(("CPU", DeviceOption(CPU)))
    gpu_reason = None
    if args.device in ("gpu", "both"):
        gpu_reason = gpu_unavailable_reason()
        if gpu_reason is None:
            devices.append(("GPU", DeviceOption(CUDA, 0)))
    model_for_peer = None
    for label, device in devices:
        ms, first, rows, model = time_device(args, device)
        results[label] = (ms, first, rows)
        if label == "CPU":
            model_for_peer = model
    header = f"{'device':8s} {'ms/iter':>10s} {'images/s':>10s} {'first run s':>12s}"
    print(header)
    for label, (ms, first, _rows) in results.items():
        print(f"{label:8s} {ms:10.3f} {args.batch_size / ms * 1e3:10.1f} {first:12.2f}")
    if gpu_reason is not None:
        print(f"{'GPU':8s} {'-':>10s} {'-':>10s}  ({gpu_reason})")
    if "CPU" in results and "GPU" in results:
        print(f"GPU speed-up over CPU: {results['CPU'][0] / results['GPU'][0]:.2f}x")
    for label, (_ms, _first, rows) in results.items():
        if rows is None:
            continue
        total = sum(r[3] for r in rows) or 1.0
        print(f"\nPer-operator times on {label} (sum {total:.3f} ms):")
        print(f"  {'#':>4s} {'op':26s} {'output':24s} {'ms':>9s} {'share':>7s} {'GFLOP/s':>9s}")
        for index, op_type, out, op_ms, flops in rows:
            gflops = f"{flops / op_ms / 1e6:9.1f}" if flops and op_ms > 0 else f"{'':9s}"
            print(f"  {index:4d} {op_type:26s} {out[:24]:24s} {op_ms:9.3f} {100 * op_ms / total:6.1f}% {gflops}")
    if args.compare == "torch":
        if model_for_peer is None:
            print("\n--compare torch needs the CPU run (use --device cpu or both)")
        else:
            peer_ms, note = time_torch(args, model_for_peer)
            if peer_ms is None:
                print(f"\nPyTorch: not run ({note})")
            else:
                ours = results["CPU"][0]
                config = f"; {note}" if note else ""
                print(f"\nPyTorch eager (CPU, same weights, best of oneDNN on/off{config}): {peer_ms:.3f} ms/iter;"
                      f" nbcaffe/PyTorch time ratio {ours / peer_ms:.2f} ({peer_ms / ours:.2f}x "
                      f"{'faster' if peer_ms >= ours else 'slower'})")
    elif args.compare == "onnxruntime":
        if model_for_peer is None:
            print("\n--compare onnxruntime needs the CPU run (use --device cpu or both)")
        else:
            peer_ms, diff, note = time_onnxruntime(args, model_for_peer)
            if peer_ms is None:
                print(f"\nONNX Runtime: not run ({note})")
            else:
                ours = results["CPU"][0]
                agree = f"; outputs agree to {diff:.1e}" if diff is not None else ""
                print(f"\nONNX Runtime (CPU, same weights, exported by nbcaffe.onnx.frontend{agree}): "
                      f"{peer_ms:.3f} ms/iter; nbcaffe/ORT time ratio {ours / peer_ms:.2f} "
                      f"({peer_ms / ours:.2f}x {'faster' if peer_ms >= ours else 'slower'})")
    return results


if __name__ == "__main__":
    main()
