"""brew.iter, brew.accuracy, brew.add_weight_decay: training-loop helpers."""

from __future__ import annotations

from nbcaffe import core
from nbcaffe.proto import caffe2_pb2


def iter(model, blob_out="ITER", **kwargs):  # noqa: A001  (Caffe2's helper name)
    """Add an int64 iteration counter: ConstantFill(0) on the CPU in ``param_init_net`` and an
    ``Iter`` op in ``net`` that advances it every run.  Returns the counter blob.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="iter_doc")
        >>> str(iter(m, "ITER"))
        'ITER'
    """
    kwargs.pop("device_option", None)
    for hint in ("order", "use_cudnn", "cudnn_exhaustive_search", "ws_nbytes_limit"):
        kwargs.pop(hint, None)
    model.param_init_net.ConstantFill([], blob_out, shape=[1], value=0, dtype=core.DataType.INT64,
                                      device_option=core.DeviceOption(caffe2_pb2.CPU, 0), **kwargs)
    return model.net.Iter(blob_out, blob_out, **kwargs)


def accuracy(model, blob_in, blob_out, **kwargs):
    """Add ``Accuracy([predictions, labels]) -> blob_out`` (``top_k`` default 1; a 0-d float).

    For ``top_k > 1`` on a GPU model the inputs are first copied to the CPU, as in Caffe2.
    """
    dev = kwargs.get("device_option") or core.scope.CurrentDeviceScope()
    on_gpu = dev is not None and dev.device_type == caffe2_pb2.CUDA
    for hint in ("order", "use_cudnn", "cudnn_exhaustive_search", "ws_nbytes_limit"):
        kwargs.pop(hint, None)
    if on_gpu and kwargs.get("top_k", 1) > 1:
        with core.DeviceScope(dev):
            blob_in = [model.net.CopyGPUToCPU(b, str(b) + "_cpu") for b in blob_in]
        kwargs["device_option"] = core.DeviceOption(caffe2_pb2.CPU, 0)
    return model.net.Accuracy(blob_in, blob_out, **kwargs)


def add_weight_decay(model, weight_decay):
    """Add L2 weight decay to the gradients of the model's weights (biases excluded)."""
    from nbcaffe import optimizer

    optimizer.add_weight_decay(model, weight_decay)
