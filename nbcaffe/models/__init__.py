"""Model zoo builders shared by the benchmark CLI, the tests and the tutorials.

Every entry of :data:`MODELS` is a :class:`ModelSpec`: ``build(model, data, is_test)`` adds the
network to a ModelHelper (parameters in ``param_init_net``) and returns the blob of class
scores ("logits") or probabilities, plus the input shape and number of classes.  Blob and
parameter names follow Caffe2's own builders (the MNIST tutorial's LeNet,
convnet_benchmarks' AlexNet and MLP, caffe2/python/models/resnet.py).

The convolutional builders take ``data_grad=False``: their first convolution then carries
Caffe2's ``no_gradient_to_input=1`` and training computes no gradient for the image batch
(see :func:`nbcaffe.models._common.no_data_grad`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from nbcaffe.models import alexnet, lenet, mlp, resnet


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable  # build(model, data_blob, is_test) -> output blob (softmax probabilities)
    input_chw: tuple  # (channels, height, width), or (features,) for MLPs
    num_labels: int
    description: str


MODELS = {
    "MLP": ModelSpec("MLP", mlp.intro_mlp, (100,), 10, "the Caffe2 intro model: FC 100->10, Sigmoid, Softmax"),
    "DeepMLP": ModelSpec("DeepMLP", mlp.deep_mlp, (256,), 1000,
                         "convnet_benchmarks' MLP: 20 x 3 FC(256) towers, Sum, FC(1000)"),
    "LeNet": ModelSpec("LeNet", lenet.lenet, (1, 28, 28), 10, "Caffe2's MNIST tutorial LeNet"),
    "AlexNet": ModelSpec("AlexNet", alexnet.alexnet, (3, 224, 224), 1000, "convnet_benchmarks' AlexNet"),
    "ResNet20": ModelSpec("ResNet20", resnet.resnet20, (3, 32, 32), 10, "CIFAR ResNet-20 (He et al. 4.2)"),
    "ResNet50": ModelSpec("ResNet50", resnet.resnet50, (3, 224, 224), 1000, "ResNet-50, Caffe2 blob names"),
}


def input_shape(name, batch_size, order="NCHW") -> tuple:
    """The data blob shape of a zoo model for a batch (channels last for NHWC)."""
    chw = MODELS[name].input_chw
    if len(chw) == 1:
        return (batch_size,) + chw
    c, h, w = chw
    return (batch_size, c, h, w) if order == "NCHW" else (batch_size, h, w, c)


__all__ = ["MODELS", "ModelSpec", "input_shape", "alexnet", "lenet", "mlp", "resnet"]
