"""LeNet as in Caffe2's MNIST tutorial (conv 5x5 x20 -> max-pool -> conv 5x5 x50 -> max-pool
-> FC 500 -> ReLU -> FC 10 -> Softmax; no ReLU after the convolutions, as in the tutorial)."""

from __future__ import annotations

from nbcaffe import brew
from nbcaffe.models._common import no_data_grad


def lenet(model, data, is_test=False, num_labels=10, data_grad=False):
    """Blobs 'conv1', 'pool1', 'conv2', 'pool2', 'fc3', 'pred', 'softmax' for 1x28x28 images.

    ``data_grad=False``: conv1 skips the image gradient (see :mod:`nbcaffe.models`)."""
    conv1 = brew.conv(model, data, "conv1", dim_in=1, dim_out=20, kernel=5, **no_data_grad(data_grad))
    pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
    conv2 = brew.conv(model, pool1, "conv2", dim_in=20, dim_out=50, kernel=5)
    pool2 = brew.max_pool(model, conv2, "pool2", kernel=2, stride=2)
    fc3 = brew.fc(model, pool2, "fc3", dim_in=50 * 4 * 4, dim_out=500)
    fc3 = brew.relu(model, fc3, fc3)
    pred = brew.fc(model, fc3, "pred", 500, num_labels)
    return brew.softmax(model, pred, "softmax")
