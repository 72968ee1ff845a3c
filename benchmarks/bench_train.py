"""Training-step time of the intro MLP (FC 100->10, Sigmoid, SoftmaxWithLoss, SGD), batch 16
and 256, beside PyTorch eager on the same model in the same run (skipped without torch).

    python benchmarks/bench_train.py [--steps 2000]

Issue #3 target: <= 0.1 ms per step at batch 16.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import LoadMeter, header, median_time  # noqa: E402

from nbcaffe import cnn, optimizer, workspace  # noqa: E402


def nbcaffe_step(batch):
    """A callable running one training step of the intro model, and its op count."""
    workspace.ResetWorkspace()
    rng = np.random.default_rng(0)
    workspace.FeedBlob("data", rng.random((batch, 100), dtype=np.float32))
    workspace.FeedBlob("label", rng.integers(0, 10, batch).astype(np.int32))
    m = cnn.CNNModelHelper(name=f"intro_train_{batch}")
    fc1 = m.FC("data", "fc1", dim_in=100, dim_out=10)
    pred = m.Sigmoid(fc1, "pred")
    _, loss = m.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])
    m.AddGradientOperators([loss])
    optimizer.build_sgd(m, base_learning_rate=0.1)
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    name = m.net.Name()
    workspace.RunNet(name, 10)
    return (lambda n=1: workspace.RunNet(name, n)), len(m.net.Proto().op)


def torch_step(batch):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 100), generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    fc = torch.nn.Linear(100, 10)
    opt = torch.optim.SGD(fc.parameters(), lr=0.1)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.sigmoid(fc(x)), y)
        loss.backward()
        opt.step()

    step()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    print(header())
    print(f"{'batch':>5s} {'framework':22s} {'ms/step':>8s} {'best':>8s} {'steps/s':>9s}  ops/step")
    with LoadMeter() as meter:
        for batch in (16, 256):
            run, n_ops = nbcaffe_step(batch)
            reps = max(10, args.steps // (1 if batch == 16 else 10))
            med, best = median_time(lambda run=run, reps=reps: run(reps))
            med, best = med / reps, best / reps
            print(f"{batch:5d} {'nbcaffe RunNet':22s} {med * 1e3:8.4f} {best * 1e3:8.4f} {1 / med:9.0f}  {n_ops}")
            step = torch_step(batch)
            if step is not None:
                tmed, tbest = median_time(step, number=max(10, reps // 10))
                print(f"{batch:5d} {'PyTorch eager (1 thr)':22s} {tmed * 1e3:8.4f} {tbest * 1e3:8.4f} {1 / tmed:9.0f}"
                      f"  (nbcaffe {tmed / med:.1f}x faster)")
            else:
                print(f"{batch:5d} {'PyTorch eager':22s}  not installed")
    print(f"# background load {meter.background:.2f}")


if __name__ == "__main__":
    main()
