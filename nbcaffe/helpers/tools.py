"""brew.image_input and brew.pad_image, plus :func:`add_op`, the one way every builder in
nbcaffe/helpers/ emits an operator."""

from __future__ import annotations

from nbcaffe import errors


def add_op(net, op_type, inputs, outputs=None, **kwargs):
    """Append ``op_type(inputs) -> outputs`` to ``net`` and return its output reference(s).

    Same as ``net.<op_type>(inputs, outputs, **kwargs)`` except that the op type need not be
    registered yet: builders name Caffe2's op types directly, so a NetDef can be built (and
    exported) before, or without, the kernel being available here.  Running such a net fails
    at CreateNet with "Operator type 'X' is not registered", naming the op.
    """
    return net._CreateAndAddToSelf(op_type, inputs, outputs, **kwargs)


def engine_hints(kwargs, use_cudnn, cudnn_exhaustive_search=False, ws_nbytes_limit=None, exhaustive=False):
    """Caffe2's cuDNN request: ``engine="CUDNN"`` (plus ``exhaustive_search`` and
    ``ws_nbytes_limit`` for convolutions) when ``use_cudnn``.  nbcaffe has no cuDNN engine;
    unknown engines fall back to the default kernel, so the NetDef stays Caffe2's and runs."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
        if exhaustive:
            kwargs["exhaustive_search"] = cudnn_exhaustive_search
            if ws_nbytes_limit:
                kwargs["ws_nbytes_limit"] = ws_nbytes_limit
    return kwargs


def check_order(order, helper):
    if order not in ("NCHW", "NHWC"):
        raise errors.ArgumentError(f"brew.{helper}: order must be 'NCHW' or 'NHWC', got {order!r}")
    return order


def require_is_test(kwargs, helper):
    """Caffe2 asserted that ``is_test`` is given to dropout and image_input (it changes what
    the op does, so a silent default hid train/test mix-ups)."""
    if "is_test" not in kwargs:
        raise errors.ArgumentError(f"brew.{helper}: argument 'is_test' is required (is_test=1 for a test/deploy"
                                   f" model, is_test=0 for training)")


def image_input(model, blob_in, blob_out, order="NCHW", use_gpu_transform=False, **kwargs):
    """Add an ``ImageInput`` op reading encoded or raw images and labels from a DB.

    ImageInput produces NHWC float images; for ``order="NCHW"`` (the default) it writes
    ``<data>_nhwc`` and an ``NHWC2NCHW`` op produces ``blob_out[0]`` (with
    ``use_gpu_transform=1`` the op's GPU transform is asked to do that instead, as in Caffe2).

    Args:
        model: the ModelHelper.
        blob_in: the DB reader blob (from ``model.CreateDB`` / ``CreateDB``), or ``[]`` with
            ``db=`` and ``db_type=`` arguments.
        blob_out: ``[data, label]`` output names.
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        use_gpu_transform: Caffe2's GPU-side normalisation flag (CUDA ops only).
        **kwargs: ImageInput arguments: ``batch_size``, ``scale`` or ``minsize``, ``crop``,
            ``mirror``, ``mean``/``std`` or ``mean_per_channel``/``std_per_channel`` (BGR
            order), ``color``, ``warp``, ``is_test`` (required), ``db``/``db_type``...

    Returns:
        (data, label) BlobReferences.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="image_input_doc")
        >>> data, label = image_input(m, "reader", ["data", "label"], batch_size=2, scale=8, crop=6,
        ...                           is_test=1)
        >>> [op.type for op in m.net.Proto().op], str(data)
        (['ImageInput', 'NHWC2NCHW'], 'data')
    """
    require_is_test(kwargs, "image_input")
    check_order(order, "image_input")
    blob_out = [blob_out] if isinstance(blob_out, str) else list(blob_out)
    if order == "NCHW" and not use_gpu_transform:
        outputs = add_op(model.net, "ImageInput", blob_in, [str(blob_out[0]) + "_nhwc"] + blob_out[1:], **kwargs)
        outputs = list(outputs)
        outputs[0] = add_op(model.net, "NHWC2NCHW", outputs[0], blob_out[0])
        return tuple(outputs)
    if use_gpu_transform:
        kwargs["use_gpu_transform"] = 1
    return add_op(model.net, "ImageInput", blob_in, blob_out, **kwargs)


def pad_image(model, blob_in, blob_out, **kwargs):
    """Add ``PadImage(blob_in) -> blob_out`` (CNNModelHelper.PadImage; no parameters).

    Args:
        model: the ModelHelper.
        blob_in: the image batch (NCHW or NHWC per ``order``).
        blob_out: output name.
        **kwargs: PadImage arguments: ``pad`` or ``pad_t``/``pad_l``/``pad_b``/``pad_r`` or
            ``pads``, ``mode`` ("constant", "reflect", "edge"), ``value``, ``order``.

    Returns:
        BlobReference of the padded output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="pad_doc")
        >>> str(pad_image(m, "x", "x_padded", pad=1, mode="reflect"))
        'x_padded'
    """
    for hint in ("use_cudnn", "cudnn_exhaustive_search", "ws_nbytes_limit"):
        kwargs.pop(hint, None)
    return add_op(model.net, "PadImage", blob_in, blob_out, **kwargs)
