"""Multilayer perceptrons: the intro model and convnet_benchmarks' deep MLP."""

from __future__ import annotations

from nbcaffe import brew


def intro_mlp(model, data, is_test=False, dim_in=100, dim_out=10):
    """The Caffe2 intro: FC(dim_in -> dim_out) -> Sigmoid -> Softmax ('fc1', 'pred', 'softmax')."""
    fc1 = brew.fc(model, data, "fc1", dim_in=dim_in, dim_out=dim_out)
    pred = brew.sigmoid(model, fc1, "pred")
    return brew.softmax(model, pred, "softmax")


def deep_mlp(model, data, is_test=False, d=256, depth=20, width=3, num_labels=1000):
    """convnet_benchmarks' MLP: ``width`` parallel towers of ``depth`` FC(d) layers, summed,
    then FC(d -> num_labels) and Softmax; blobs ``fc_<i>_<j>``, ``sum``, ``last``."""
    for i in range(depth):
        for j in range(width):
            current = f"fc_{i}_{j}" if i > 0 else data
            brew.fc(model, current, f"fc_{i + 1}_{j}", dim_in=d, dim_out=d, weight_init=("XavierFill", {}),
                    bias_init=("XavierFill", {}))
    brew.sum(model, [f"fc_{depth}_{j}" for j in range(width)], ["sum"])
    last = brew.fc(model, "sum", "last", dim_in=d, dim_out=num_labels, weight_init=("XavierFill", {}),
                   bias_init=("XavierFill", {}))
    return brew.softmax(model, last, "softmax")
