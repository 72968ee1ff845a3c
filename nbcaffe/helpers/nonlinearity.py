"""brew.relu, sigmoid, tanh, leaky_relu, elu, softmax: activation layers (no parameters)."""

from __future__ import annotations


def _engine(kwargs, use_cudnn):
    # Caffe2 requested the cuDNN engine here; nbcaffe has none, and unknown engines fall back
    # to the default kernel, so the NetDef stays Caffe2-identical and runs anyway.
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return kwargs


def relu(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Add ``Relu(blob_in) -> blob_out`` (may be in place: blob_out == blob_in).

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="relu_doc")
        >>> str(relu(m, "x", "x"))
        'x'
    """
    return model.net.Relu(blob_in, blob_out, order=order, **_engine(kwargs, use_cudnn))


def sigmoid(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Add ``Sigmoid(blob_in) -> blob_out``."""
    return model.net.Sigmoid(blob_in, blob_out, order=order, **_engine(kwargs, use_cudnn))


def tanh(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Add ``Tanh(blob_in) -> blob_out``."""
    return model.net.Tanh(blob_in, blob_out, order=order, **_engine(kwargs, use_cudnn))


def leaky_relu(model, blob_in, blob_out, alpha=0.01, **kwargs):
    """Add ``LeakyRelu(blob_in, alpha) -> blob_out``."""
    kwargs.pop("use_cudnn", None)
    return model.net.LeakyRelu(blob_in, blob_out, alpha=alpha, **kwargs)


def elu(model, blob_in, blob_out, alpha=1.0, **kwargs):
    """Add ``Elu(blob_in, alpha) -> blob_out``."""
    kwargs.pop("use_cudnn", None)
    return model.net.Elu(blob_in, blob_out, alpha=alpha, **kwargs)


def softmax(model, blob_in, blob_out=None, use_cudnn=False, **kwargs):
    """Add ``Softmax(blob_in) -> blob_out`` (``axis`` default 1, Caffe2's 2-D flattening)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    if blob_out is not None:
        return model.net.Softmax(blob_in, blob_out, **kwargs)
    return model.net.Softmax(blob_in, **kwargs)
