"""Inference speed of whole models: nbcaffe's Predictor beside ONNX Runtime on the same model.

    python benchmarks/bench_inference.py                    # the default set, batch 1 and 8
    python benchmarks/bench_inference.py --models lenet resnet50 --batches 1
    python benchmarks/bench_inference.py --all              # every model (VGG-19 at b8 is slow)
    python benchmarks/bench_inference.py --threads 1        # both frameworks on one thread
    python benchmarks/bench_inference.py --no-optimize      # the Predictor without its graph rewrites
    python benchmarks/bench_inference.py --list

Models: Caffe1 models from ../shared/testdata/caffe1 translated by nbcaffe.caffe_translator
(real weights), Caffe2 files from ../shared/testdata/caffe2 (SqueezeNet traffic lights and the
PyTorch->ONNX->Caffe2 LeNet with real weights; the model-zoo predict nets with the constant
0.02 init nets, which time like the real ones).  Each NetDef is exported for the batch size with
nbcaffe.onnx.frontend into an ONNX file; ONNX Runtime (CPU provider, all cores, default graph
optimisations) runs that file and nbcaffe runs the NetDef through ``nbcaffe.Predictor``, both
from NumPy input to NumPy output.  Outputs are checked to agree (max abs difference printed).

Method: the two frameworks alternate in blocks (at least --reps calls and 0.2 s each, the first
call of a block dropped) for --rounds rounds, with a short pause between blocks so that one
framework's spinning threads do not steal the other's cores; each row gives the median of the
per-call times over all blocks, the ratio nbcaffe / ORT (below 1 = nbcaffe faster) and the
background CPU load of other processes during the row.  Shared machines: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import LoadMeter, header  # noqa: E402

from nbcaffe import Predictor, caffe_translator, get_num_threads, set_num_threads, utils  # noqa: E402

TESTDATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata"

# name -> (kind, folder, files..., input shape without batch)
CAFFE1 = {
    "lenet": ("lenet_mnist", "lenet.prototxt", "lenet_iter_10000", (1, 28, 28)),
    "cifar10_quick": ("cifar10_quick_v1", "cifar10_quick.prototxt", "cifar10_quick_iter_5000", (3, 32, 32)),
    "cifar10_full": ("cifar10_full_v1", "cifar10_full.prototxt", "cifar10_full_iter_70000", (3, 32, 32)),
    "mtcnn_pnet": ("mtcnn", "det1.prototxt", "det1", (3, 12, 12)),
    "mtcnn_rnet": ("mtcnn", "det2.prototxt", "det2", (3, 24, 24)),
    "mtcnn_onet": ("mtcnn", "det3.prototxt", "det3", (3, 48, 48)),
    "ultraface_slim": ("ultraface_slim320", "slim-320.prototxt", "slim-320", (3, 240, 320)),
    "ultraface_rfb": ("ultraface_rfb320", "RFB-320.prototxt", "RFB-320", (3, 240, 320)),
}
CAFFE2 = {
    "squeezenet_traffic": ("squeezenet_trafficlight", "init_net.pb", "predict_net.pb", (3, 224, 224)),
    "pytorch_lenet": ("pytorch_onnx_lenet", "init_net.pb", "predict_net.pb", (1, 28, 28)),
}
ZOO = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "vgg19", "zfnet512"]
DEFAULT = ["lenet", "cifar10_quick", "cifar10_full", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "ultraface_slim",
           "ultraface_rfb", "squeezenet_traffic", "pytorch_lenet", "resnet50", "inception_v1", "densenet121",
           "bvlc_alexnet"]


def all_models():
    return list(CAFFE1) + list(CAFFE2) + ZOO


def load(name):
    """(init_net, predict_net, input blob, input shape without batch) of a benchmark model."""
    if name in CAFFE1:
        folder, prototxt, weights, shape = CAFFE1[name]
        base = TESTDATA / "caffe1" / folder
        init_net, predict_net = caffe_translator.TranslatePretrainedModel(str(base / prototxt),
                                                                          str(base / f"{weights}.caffemodel"))
        return init_net, predict_net, predict_net.external_input[0], shape
    if name in CAFFE2:
        folder, init_file, predict_file, shape = CAFFE2[name]
        base = TESTDATA / "caffe2" / folder
        predict_net = utils.read_net(base / predict_file)
        return utils.read_net(base / init_file), predict_net, predict_net.external_input[0], shape
    from nbcaffe.models import download

    model = download.load_model(TESTDATA / "caffe2" / "zoo_predict_nets" / name,
                                init_net="init_net_const002.pbtxt", predict_net="predict_net.pbtxt", name=name)
    ((blob, (_, shape)),) = model.inputs().items()
    return model.init_net, model.predict_net, blob, tuple(shape[1:])


def ort_session(init_net, predict_net, blob, x, threads):
    import onnx
    import onnxruntime as ort

    from nbcaffe.onnx import frontend

    model = frontend.caffe2_net_to_onnx_model(predict_net, init_net,
                                              value_info={blob: (onnx.TensorProto.FLOAT, x.shape)})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, {session.get_inputs()[0].name: x}


def block(fn, reps, min_seconds):
    """Per-call seconds of a block (first call dropped)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench(name, batch, args):
    init_net, predict_net, blob, shape = load(name)
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(shape)).astype(np.float32)
    t0 = time.perf_counter()
    predictor = Predictor(init_net, predict_net, device="cpu", optimize=args.optimize)
    ours = predictor.run({blob: x})
    first = time.perf_counter() - t0
    session, feeds = ort_session(init_net, predict_net, blob, x, args.ort_threads)
    theirs = session.run(None, feeds)
    by_name = dict(zip([o.name for o in session.get_outputs()], theirs))
    diffs = [float(np.abs(a - by_name.get(n, theirs[i])).max()) for i, (n, a) in
             enumerate(zip(predictor.output_names, ours))]
    runners = {"nbcaffe": lambda: predictor.run({blob: x}), "ORT": lambda: session.run(None, feeds)}
    samples = {k: [] for k in runners}
    with LoadMeter() as load_meter:
        for _ in range(args.rounds):
            for key, fn in runners.items():
                samples[key] += block(fn, args.reps, args.min_seconds)
                time.sleep(args.pause)
    ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    return ms, max(diffs), first, load_meter.background


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.2)
    parser.add_argument("--pause", type=float, default=0.15)
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="run the predict net as written (no BN folding, no fused ops)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both frameworks (nbcaffe.set_num_threads, ORT intra-op); 0 = their defaults")
    args = parser.parse_args(argv)
    args.ort_threads = args.threads
    if args.threads:
        set_num_threads(args.threads)
    if args.list:
        print("\n".join(all_models()))
        return 0
    names = all_models() if args.all else (args.models or DEFAULT)
    unknown = [n for n in names if n not in all_models()]
    if unknown:
        parser.error(f"unknown models {unknown}; --list shows them")
    print(header())
    print(f"# uptime: {os.popen('uptime').read().strip()}")
    print(f"# threads: nbcaffe {get_num_threads()}, ORT {args.ort_threads or 'default (all cores)'};"
          f" Predictor graph rewrites {'on' if args.optimize else 'off'}")
    print(f"{'model':20s} {'batch':>5s} {'nbcaffe ms':>11s} {'ORT ms':>9s} {'ratio':>6s} {'max |diff|':>10s}"
          f" {'1st call s':>10s} {'bg load':>7s}")
    ratios = []
    for name in names:
        for batch in args.batches:
            ms, diff, first, background = bench(name, batch, args)
            ratio = ms["nbcaffe"] / ms["ORT"]
            ratios.append(ratio)
            print(f"{name:20s} {batch:5d} {ms['nbcaffe']:11.3f} {ms['ORT']:9.3f} {ratio:6.2f} {diff:10.2e}"
                  f" {first:10.2f} {background:7.0%}", flush=True)
    geo = float(np.exp(np.mean(np.log(ratios))))
    print(f"# geometric mean ratio nbcaffe/ORT: {geo:.2f} over {len(ratios)} rows;"
          f" rows within 1.5x: {sum(r <= 1.5 for r in ratios)}/{len(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
