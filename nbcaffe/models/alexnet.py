"""AlexNet as in Caffe2's convnet_benchmarks (the one-tower 64-192-384-256-256 variant)."""

from __future__ import annotations

from nbcaffe import brew
from nbcaffe.models._common import no_data_grad

XAVIER = ("XavierFill", {})
CONSTANT = ("ConstantFill", {})


def alexnet(model, data, is_test=False, num_labels=1000, data_grad=False):
    """Blobs 'conv1'..'conv5' (ReLU in place), 'pool1', 'pool2', 'pool5', 'fc6'..'fc8', 'pred'
    for 3x224x224 images (convolutions 11/4 pad 2, 5 pad 2, 3 pad 1; max-pools 3/2)."""
    conv1 = brew.conv(model, data, "conv1", 3, 64, 11, XAVIER, CONSTANT, stride=4, pad=2, **no_data_grad(data_grad))
    relu1 = brew.relu(model, conv1, "conv1")
    pool1 = brew.max_pool(model, relu1, "pool1", kernel=3, stride=2)
    conv2 = brew.conv(model, pool1, "conv2", 64, 192, 5, XAVIER, CONSTANT, pad=2)
    relu2 = brew.relu(model, conv2, "conv2")
    pool2 = brew.max_pool(model, relu2, "pool2", kernel=3, stride=2)
    conv3 = brew.conv(model, pool2, "conv3", 192, 384, 3, XAVIER, CONSTANT, pad=1)
    relu3 = brew.relu(model, conv3, "conv3")
    conv4 = brew.conv(model, relu3, "conv4", 384, 256, 3, XAVIER, CONSTANT, pad=1)
    relu4 = brew.relu(model, conv4, "conv4")
    conv5 = brew.conv(model, relu4, "conv5", 256, 256, 3, XAVIER, CONSTANT, pad=1)
    relu5 = brew.relu(model, conv5, "conv5")
    pool5 = brew.max_pool(model, relu5, "pool5", kernel=3, stride=2)
    fc6 = brew.fc(model, pool5, "fc6", 256 * 6 * 6, 4096, XAVIER, CONSTANT)
    relu6 = brew.relu(model, fc6, "fc6")
    fc7 = brew.fc(model, relu6, "fc7", 4096, 4096, XAVIER, CONSTANT)
    relu7 = brew.relu(model, fc7, "fc7")
    fc8 = brew.fc(model, relu7, "fc8", 4096, num_labels, XAVIER, CONSTANT)
    return brew.softmax(model, fc8, "pred")
