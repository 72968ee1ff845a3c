"""brew.conv, conv_nd, conv_transpose, group_conv, group_conv_deprecated: convolutions with
their filter and bias parameters.

Filter shapes follow the storage order (Caffe2's convention): NCHW filters are
``(dim_out, dim_in / group, kh, kw)``, NHWC filters ``(dim_out, kh, kw, dim_in / group)``;
ConvTranspose filters are ``(dim_in, dim_out, kh, kw)`` / ``(dim_in, kh, kw, dim_out)``.
"""

from __future__ import annotations

from nbcaffe import errors
from nbcaffe.helpers.tools import add_op, check_order, engine_hints
from nbcaffe.model_helper import default_initializers
from nbcaffe.modeling.parameter_info import ParameterTags


def _kernel_list(kernel, is_nd, helper):
    """The kernel sizes as a list: an int means a square 2-D kernel (or 1-D for conv_nd)."""
    if isinstance(kernel, (list, tuple)):
        sizes = [int(k) for k in kernel]
        if not is_nd and len(sizes) != 2:
            raise errors.ArgumentError(f"brew.{helper}: a 2-D kernel is an int or (kh, kw), got {kernel!r}")
    else:
        sizes = [int(kernel)] * (1 if is_nd else 2)
    if not sizes or any(k < 1 for k in sizes):
        raise errors.ArgumentError(f"brew.{helper}: kernel sizes must be positive, got {kernel!r}")
    return sizes


def _check_groups(dim_in, dim_out, group, helper):
    if group < 1 or dim_in % group or dim_out % group:
        raise errors.ArgumentError(f"brew.{helper}: dim_in={dim_in} and dim_out={dim_out} must both be divisible"
                                   f" by group={group}")


def _conv_base(model, is_nd, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
               WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None, use_cudnn=False,
               order="NCHW", cudnn_exhaustive_search=False, ws_nbytes_limit=None, helper="conv", **kwargs):
    check_order(order, helper)
    kernels = _kernel_list(kernel, is_nd, helper)
    _check_groups(dim_in, dim_out, group, helper)
    engine_hints(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit, exhaustive=True)
    use_bias = not kwargs.pop("no_bias", False)
    blob_out = blob_out or model.net.NextName()
    if order == "NCHW":
        weight_shape = [dim_out, dim_in // group] + kernels
    else:
        weight_shape = [dim_out] + kernels + [dim_in // group]
    weight_initializer, bias_initializer = default_initializers(model, weight_init, bias_init, WeightInitializer,
                                                                BiasInitializer)
    weight = model.create_param(param_name=str(blob_out) + "_w", shape=weight_shape,
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    inputs = [blob_in, weight]
    if use_bias:
        inputs.append(model.create_param(param_name=str(blob_out) + "_b", shape=[dim_out],
                                         initializer=bias_initializer, tags=ParameterTags.BIAS))
    if transform_inputs is not None:
        transform_inputs(model, blob_out, inputs)
    if group != 1:
        kwargs["group"] = group
    # the op learns "no bias" from its input count; Caffe2 spells a square 2-D kernel `kernel`
    if is_nd or isinstance(kernel, (list, tuple)):
        kwargs["kernels"] = kernels
    else:
        kwargs["kernel"] = kernels[0]
    return add_op(model.net, "Conv", inputs, blob_out, order=order, **kwargs)


def conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
         WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None, **kwargs):
    """Add a 2-D ``Conv([blob_in, <out>_w, <out>_b]) -> blob_out`` and create its parameters.

    Args:
        model: the ModelHelper.
        blob_in: input images (N, C, H, W) for NCHW, (N, H, W, C) for NHWC.
        blob_out: output name; parameters are ``<blob_out>_w`` (the filter, shape per
            ``order``: (dim_out, dim_in/group, k, k) or (dim_out, k, k, dim_in/group)) and
            ``<blob_out>_b`` (dim_out).
        dim_in, dim_out: input and output channels.
        kernel: an int (square kernel) or (kh, kw).
        weight_init / bias_init: ``(fill op, kwargs)``; default XavierFill / ConstantFill(0).
        WeightInitializer / BiasInitializer: initializer class or instance instead of tuples.
        group: grouped convolution (dim_in and dim_out divisible by it).
        transform_inputs: ``f(model, blob_out, inputs)`` may edit the input list in place.
        **kwargs: Conv arguments (``stride``, ``pad``, ``dilation``, ``order``, ``no_bias``,
            ``use_cudnn`` -> engine CUDNN, ...); ``order`` and ``use_cudnn`` come from the
            model's arg_scope.

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="conv_doc")
        >>> y = conv(m, "data", "conv1", dim_in=3, dim_out=8, kernel=5, pad=2)
        >>> [str(p) for p in m.params], m.get_param_info("conv1_w").shape
        (['conv1_w', 'conv1_b'], [8, 3, 5, 5])
    """
    return _conv_base(model, False, blob_in, blob_out, dim_in, dim_out, kernel, weight_init, bias_init,
                      WeightInitializer, BiasInitializer, group, transform_inputs, helper="conv", **kwargs)


def conv_nd(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
            WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None, order="NCHW", **kwargs):
    """Add an N-D ``Conv`` (NCHW only) with ``kernels=kernel``; parameters as :func:`conv`.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, D1, ..., Dn).
        blob_out: output name (parameters ``<blob_out>_w`` (dim_out, dim_in/group, *kernel)
            and ``<blob_out>_b``).
        dim_in, dim_out: input and output channels.
        kernel: list of kernel sizes, one per spatial dim (an int means a 1-D kernel).
        weight_init, bias_init, WeightInitializer, BiasInitializer, group, transform_inputs:
            as :func:`conv`.
        order: must be "NCHW" (as in Caffe2).
        **kwargs: Conv arguments (``strides``, ``pads``, ``dilations``, ...).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="conv_nd_doc")
        >>> y = conv_nd(m, "vol", "c3d", dim_in=1, dim_out=2, kernel=[3, 3, 3])
        >>> m.get_param_info("c3d_w").shape
        [2, 1, 3, 3, 3]
    """
    if order != "NCHW":
        raise errors.ArgumentError(f"brew.conv_nd supports only order='NCHW' (as Caffe2's ConvNd), got {order!r}")
    if not isinstance(kernel, (list, tuple)):
        kernel = [kernel]
    return _conv_base(model, True, blob_in, blob_out, dim_in, dim_out, kernel, weight_init, bias_init,
                      WeightInitializer, BiasInitializer, group, transform_inputs, order=order, helper="conv_nd",
                      **kwargs)


def conv_transpose(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
                   WeightInitializer=None, BiasInitializer=None, use_cudnn=False, order="NCHW",
                   cudnn_exhaustive_search=False, ws_nbytes_limit=None, **kwargs):
    """Add ``ConvTranspose([blob_in, <out>_w, <out>_b]) -> blob_out`` and create its parameters.

    Args:
        model: the ModelHelper.
        blob_in: input (N, dim_in, H, W) for NCHW.
        blob_out: output name; filter ``<blob_out>_w`` is (dim_in, dim_out, kh, kw) for NCHW,
            (dim_in, kh, kw, dim_out) for NHWC; bias ``<blob_out>_b`` is (dim_out).
        dim_in, dim_out: input and output channels.
        kernel: an int (square) or (kh, kw).
        weight_init / bias_init, WeightInitializer / BiasInitializer: as :func:`conv`.
        use_cudnn, order, cudnn_exhaustive_search, ws_nbytes_limit: from the arg_scope.
        **kwargs: ConvTranspose arguments (``stride``, ``pad``, ``adj``, ``no_bias``, ...).

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="deconv_doc")
        >>> y = conv_transpose(m, "x", "up", dim_in=4, dim_out=2, kernel=2, stride=2)
        >>> m.get_param_info("up_w").shape
        [4, 2, 2, 2]
    """
    check_order(order, "conv_transpose")
    kernels = _kernel_list(kernel, False, "conv_transpose")
    blob_out = blob_out or model.net.NextName()
    use_bias = not kwargs.pop("no_bias", False)
    weight_shape = [dim_in, dim_out] + kernels if order == "NCHW" else [dim_in] + kernels + [dim_out]
    weight_initializer, bias_initializer = default_initializers(model, weight_init, bias_init, WeightInitializer,
                                                                BiasInitializer)
    weight = model.create_param(param_name=str(blob_out) + "_w", shape=weight_shape,
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    inputs = [blob_in, weight]
    if use_bias:
        inputs.append(model.create_param(param_name=str(blob_out) + "_b", shape=[dim_out],
                                         initializer=bias_initializer, tags=ParameterTags.BIAS))
    engine_hints(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit, exhaustive=True)
    if isinstance(kernel, (list, tuple)):
        kwargs["kernels"] = kernels
    else:
        kwargs["kernel"] = kernels[0]
    return add_op(model.net, "ConvTranspose", inputs, blob_out, order=order, **kwargs)


def group_conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None, group=1,
               **kwargs):
    """A grouped :func:`conv` (Caffe2 kept this name for old code): ``Conv(..., group=group)``.

    Args:
        model: the ModelHelper.
        blob_in, blob_out, dim_in, dim_out, kernel, weight_init, bias_init: as :func:`conv`.
        group: number of groups; the filter is (dim_out, dim_in/group, k, k) for NCHW.
        **kwargs: as :func:`conv`.

    Returns:
        BlobReference of the output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="group_conv_doc")
        >>> y = group_conv(m, "x", "g", dim_in=4, dim_out=6, kernel=3, group=2)
        >>> m.get_param_info("g_w").shape
        [6, 2, 3, 3]
    """
    return conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=weight_init, bias_init=bias_init,
                group=group, **kwargs)


def group_conv_deprecated(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
                          group=1, use_cudnn=False, order="NCHW", cudnn_exhaustive_search=False,
                          ws_nbytes_limit=None, **kwargs):
    """Caffe2's old grouped convolution: ``DepthSplit`` into ``group`` parts, one ``Conv`` per
    part (parameters ``<out>_gconv_<i>_w`` / ``_b``), then ``Concat`` into ``blob_out``.
    Prefer :func:`conv` with ``group``.

    Args:
        model: the ModelHelper.
        blob_in, blob_out, dim_in, dim_out: as :func:`conv` (both dims divisible by group).
        kernel: an int (square kernel) or (kh, kw).
        weight_init, bias_init: ``(fill op, kwargs)`` tuples.
        group: number of groups.
        use_cudnn, order, cudnn_exhaustive_search, ws_nbytes_limit: from the arg_scope.
        **kwargs: Conv arguments.

    Returns:
        BlobReference of the concatenated output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="gconv_old_doc")
        >>> y = group_conv_deprecated(m, "x", "g", dim_in=4, dim_out=4, kernel=1, group=2)
        >>> [op.type for op in m.net.Proto().op]
        ['DepthSplit', 'Conv', 'Conv', 'Concat']
    """
    check_order(order, "group_conv_deprecated")
    _check_groups(dim_in, dim_out, group, "group_conv_deprecated")
    kernels = _kernel_list(kernel, False, "group_conv_deprecated")
    use_bias = not kwargs.pop("no_bias", False)
    engine_hints(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit, exhaustive=True)
    blob_out = str(blob_out)
    # (Caffe2 passed `dimensions=`, an argument Split never had, so its equal default split applied)
    splits = add_op(model.net, "DepthSplit", blob_in, [f"_{blob_out}_gconv_split_{i}" for i in range(group)],
                    split=[dim_in // group] * group, order=order)
    if group == 1:
        splits = (splits,)
    if order == "NCHW":
        weight_shape = [dim_out // group, dim_in // group] + kernels
    else:
        weight_shape = [dim_out // group] + kernels + [dim_in // group]
    weight_initializer, bias_initializer = default_initializers(model, weight_init, bias_init, None, None)
    conv_blobs = []
    for i in range(group):
        weight = model.create_param(param_name=f"{blob_out}_gconv_{i}_w", shape=weight_shape,
                                    initializer=weight_initializer, tags=ParameterTags.WEIGHT)
        inputs = [splits[i], weight]
        if use_bias:
            inputs.append(model.create_param(param_name=f"{blob_out}_gconv_{i}_b", shape=[dim_out // group],
                                             initializer=bias_initializer, tags=ParameterTags.BIAS))
        size = {"kernels": kernels} if isinstance(kernel, (list, tuple)) else {"kernel": kernels[0]}
        conv_blobs.append(add_op(model.net, "Conv", inputs, f"{blob_out}_gconv_{i}", order=order, **size, **kwargs))
    concat, _ = add_op(model.net, "Concat", conv_blobs, [blob_out, f"_{blob_out}_concat_dims"], order=order)
    return concat
