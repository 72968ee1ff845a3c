"""ResNets with the blob names of Caffe2's caffe2/python/models/resnet.py.

``resnet50`` follows Caffe2's ``create_resnet50`` (bottleneck blocks, MSRA-initialised convs
without bias, SpatialBN epsilon 1e-3 and momentum 0.1 as Caffe2 set them).  ``resnet20`` is the
CIFAR network of He et al. section 4.2 with n = 3 two-conv blocks per stage (6n+2 = 20
layers).  Caffe2's ``create_resnet_32x32`` built ``2 * num_groups`` blocks per stage and gave
conv1 no padding; here the stages hold ``n`` blocks and conv1 is padded so the maps are
32/16/8 as in the paper (and as the PyTorch peer model in the benchmarks).
"""

from __future__ import annotations

from nbcaffe import brew
from nbcaffe.models._common import no_data_grad

MSRA = ("MSRAFill", {})


class ResNetBuilder:
    """Adds residual components, naming blobs comp_<k>_conv_<i>, comp_<k>_spatbn_<i>,
    shortcut_projection_<k>[_spatbn], comp_<k>_sum_<i>."""

    def __init__(self, model, prev_blob, no_bias, is_test, spatial_bn_mom=0.9):
        self.model = model
        self.comp_count = 0
        self.comp_idx = 0
        self.prev_blob = prev_blob
        self.is_test = is_test
        self.spatial_bn_mom = spatial_bn_mom
        self.no_bias = 1 if no_bias else 0

    def add_conv(self, in_filters, out_filters, kernel, stride=1, pad=0):
        self.comp_idx += 1
        self.prev_blob = brew.conv(self.model, self.prev_blob, f"comp_{self.comp_count}_conv_{self.comp_idx}",
                                   in_filters, out_filters, weight_init=MSRA, kernel=kernel, stride=stride, pad=pad,
                                   no_bias=self.no_bias)
        return self.prev_blob

    def add_relu(self):
        self.prev_blob = brew.relu(self.model, self.prev_blob, self.prev_blob)  # in place
        return self.prev_blob

    def add_spatial_bn(self, num_filters):
        self.prev_blob = brew.spatial_bn(self.model, self.prev_blob, f"comp_{self.comp_count}_spatbn_{self.comp_idx}",
                                         num_filters, epsilon=1e-3, momentum=self.spatial_bn_mom,
                                         is_test=self.is_test)
        return self.prev_blob

    def _shortcut(self, shortcut_blob, in_filters, out_filters, down_sampling):
        shortcut_blob = brew.conv(self.model, shortcut_blob, f"shortcut_projection_{self.comp_count}", in_filters,
                                  out_filters, weight_init=MSRA, kernel=1, stride=2 if down_sampling else 1,
                                  no_bias=self.no_bias)
        return brew.spatial_bn(self.model, shortcut_blob, f"shortcut_projection_{self.comp_count}_spatbn",
                               out_filters, epsilon=1e-3, momentum=self.spatial_bn_mom, is_test=self.is_test)

    def _finish(self, shortcut_blob, last_conv):
        self.prev_blob = brew.sum(self.model, [shortcut_blob, last_conv], f"comp_{self.comp_count}_sum_{self.comp_idx}")
        self.comp_idx += 1
        self.add_relu()
        self.comp_count += 1

    def add_bottleneck(self, input_filters, base_filters, output_filters, down_sampling=False):
        """1x1 -> 3x3 (stride 2 when down-sampling) -> 1x1, each with SpatialBN, plus shortcut."""
        self.comp_idx = 0
        shortcut_blob = self.prev_blob
        self.add_conv(input_filters, base_filters, kernel=1)
        self.add_spatial_bn(base_filters)
        self.add_relu()
        self.add_conv(base_filters, base_filters, kernel=3, stride=2 if down_sampling else 1, pad=1)
        self.add_spatial_bn(base_filters)
        self.add_relu()
        self.add_conv(base_filters, output_filters, kernel=1)
        last_conv = self.add_spatial_bn(output_filters)
        if output_filters > input_filters:
            shortcut_blob = self._shortcut(shortcut_blob, input_filters, output_filters, down_sampling)
        self._finish(shortcut_blob, last_conv)

    def add_simple_block(self, input_filters, num_filters, down_sampling=False):
        """3x3 -> 3x3 with SpatialBN, plus a projection shortcut when the width changes."""
        self.comp_idx = 0
        shortcut_blob = self.prev_blob
        self.add_conv(input_filters, num_filters, kernel=3, stride=2 if down_sampling else 1, pad=1)
        self.add_spatial_bn(num_filters)
        self.add_relu()
        self.add_conv(num_filters, num_filters, kernel=3, pad=1)
        last_conv = self.add_spatial_bn(num_filters)
        if num_filters != input_filters:
            shortcut_blob = self._shortcut(shortcut_blob, input_filters, num_filters, down_sampling)
        self._finish(shortcut_blob, last_conv)


def resnet50(model, data, is_test=False, num_labels=1000, num_input_channels=3, no_bias=True, conv1_kernel=7,
             conv1_stride=2, final_avg_kernel=7, data_grad=False):
    """ResNet-50 for 224x224 images; returns 'softmax' (the FC is 'last_out_L<num_labels>')."""
    brew.conv(model, data, "conv1", num_input_channels, 64, weight_init=MSRA, kernel=conv1_kernel,
              stride=conv1_stride, pad=3, no_bias=1 if no_bias else 0, **no_data_grad(data_grad))
    brew.spatial_bn(model, "conv1", "conv1_spatbn_relu", 64, epsilon=1e-3, momentum=0.1, is_test=is_test)
    brew.relu(model, "conv1_spatbn_relu", "conv1_spatbn_relu")
    brew.max_pool(model, "conv1_spatbn_relu", "pool1", kernel=3, stride=2)
    builder = ResNetBuilder(model, "pool1", no_bias=no_bias, is_test=is_test, spatial_bn_mom=0.1)
    builder.add_bottleneck(64, 64, 256)
    builder.add_bottleneck(256, 64, 256)
    builder.add_bottleneck(256, 64, 256)
    builder.add_bottleneck(256, 128, 512, True)
    for _ in range(3):
        builder.add_bottleneck(512, 128, 512)
    builder.add_bottleneck(512, 256, 1024, True)
    for _ in range(5):
        builder.add_bottleneck(1024, 256, 1024)
    builder.add_bottleneck(1024, 512, 2048, True)
    builder.add_bottleneck(2048, 512, 2048)
    builder.add_bottleneck(2048, 512, 2048)
    final_avg = brew.average_pool(model, builder.prev_blob, "final_avg", kernel=final_avg_kernel, stride=1)
    last_out = brew.fc(model, final_avg, f"last_out_L{num_labels}", 2048, num_labels)
    return brew.softmax(model, last_out, "softmax")


def resnet20(model, data, is_test=False, num_labels=10, num_input_channels=3, n=3, data_grad=False):
    """CIFAR ResNet-(6n+2): conv1 3x3x16, three stages of n simple blocks (16, 32, 64 filters),
    global average pool, FC; returns 'softmax'."""
    brew.conv(model, data, "conv1", num_input_channels, 16, weight_init=MSRA, kernel=3, stride=1, pad=1, no_bias=1,
              **no_data_grad(data_grad))
    brew.spatial_bn(model, "conv1", "conv1_spatbn", 16, epsilon=1e-3, is_test=is_test)
    brew.relu(model, "conv1_spatbn", "relu1")
    builder = ResNetBuilder(model, "relu1", no_bias=True, is_test=is_test)
    prev_filters = 16
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            builder.add_simple_block(prev_filters if block == 0 else filters, filters,
                                     down_sampling=block == 0 and stage > 0)
        prev_filters = filters
    brew.average_pool(model, builder.prev_blob, "final_avg", kernel=8, stride=1)
    brew.fc(model, "final_avg", "last_out", 64, num_labels)
    return brew.softmax(model, "last_out", "softmax")
