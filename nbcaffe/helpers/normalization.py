"""brew.lrn, spatial_bn, instance_norm, layer_norm: normalization layers and their parameters.

Parameter and output names are Caffe2's: SpatialBN ``<out>_s`` (scale), ``_b`` (bias),
``_rm`` (running mean) and ``_riv`` (running variance, despite the name) with training
outputs ``_sm`` / ``_siv`` (saved mean / saved inverse std); InstanceNorm ``_s``, ``_b`` with
outputs ``_sm`` / ``_siv``; LayerNorm ``_scale``, ``_bias``; the CPU LRN's second output
``_<out>_scale``.
"""

from __future__ import annotations

from nbcaffe import scope
from nbcaffe.helpers.tools import add_op, check_order
from nbcaffe.model_helper import default_initializers
from nbcaffe.modeling import initializers
from nbcaffe.modeling.parameter_info import ParameterTags
from nbcaffe.proto import caffe2_pb2


def lrn(model, blob_in, blob_out, order="NCHW", use_cudnn=False, **kwargs):
    """Add ``LRN(blob_in) -> blob_out`` (local response normalization across channels).

    On the CPU (no device, or a CPU DeviceOption / DeviceScope) the op also writes its
    ``scale`` buffer to ``_<blob_out>_scale``, as Caffe2's CPU LRN does; a GPU model with
    ``use_cudnn`` gets one output and engine CUDNN.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, H, W) for NCHW.
        blob_out: output name.
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        use_cudnn: request engine CUDNN on GPU models.
        **kwargs: LRN arguments: ``size``, ``alpha``, ``beta``, ``bias``; ``device_option``.

    Returns:
        BlobReference of the normalized output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="lrn_doc")
        >>> y = lrn(m, "conv1", "norm1", size=5, alpha=1e-4, beta=0.75)
        >>> list(m.net.Proto().op[0].output)
        ['norm1', '_norm1_scale']
    """
    check_order(order, "lrn")
    dev = kwargs["device_option"] if "device_option" in kwargs else scope.CurrentDeviceScope()
    is_cpu = dev is None or dev.device_type == caffe2_pb2.CPU
    if use_cudnn and not is_cpu:
        kwargs["engine"] = "CUDNN"
        return add_op(model.net, "LRN", blob_in, blob_out, order=order, **kwargs)
    return add_op(model.net, "LRN", blob_in, [blob_out, "_" + str(blob_out) + "_scale"], order=order, **kwargs)[0]


def spatial_bn(model, blob_in, blob_out, dim_in, init_scale=1.0, init_bias=0.0, ScaleInitializer=None,
               BiasInitializer=None, RunningMeanInitializer=None, RunningVarianceInitializer=None, order="NCHW",
               **kwargs):
    """Add ``SpatialBN`` (batch normalization over N and the spatial dims) and its parameters.

    Parameters: ``<out>_s`` scale (ConstantFill init_scale, WEIGHT), ``<out>_b`` bias
    (ConstantFill init_bias, BIAS), ``<out>_rm`` running mean (0) and ``<out>_riv`` running
    variance (1), both COMPUTED_PARAM (saved with the model, not optimised).  For training
    (``is_test`` absent or 0) the op writes ``[out, _rm, _riv, _sm, _siv]`` (running stats
    updated in place); with ``is_test=1`` only ``out``.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, ...) for NCHW, (N, ..., C) for NHWC.
        blob_out: output name.
        dim_in: channels C.
        init_scale / init_bias: initial scale and bias values.
        ScaleInitializer, BiasInitializer, RunningMeanInitializer, RunningVarianceInitializer:
            initializer classes/instances instead of the ConstantFill defaults.
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        **kwargs: SpatialBN arguments: ``is_test``, ``epsilon`` (1e-5), ``momentum`` (0.9).

    Returns:
        BlobReference of the normalized output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="bn_doc")
        >>> y = spatial_bn(m, "conv1", "bn1", dim_in=16, epsilon=1e-3, is_test=0)
        >>> list(m.net.Proto().op[0].output)
        ['bn1', 'bn1_rm', 'bn1_riv', 'bn1_sm', 'bn1_siv']
        >>> [str(p) for p in m.params], [str(p) for p in m.GetComputedParams()]
        (['bn1_s', 'bn1_b'], ['bn1_rm', 'bn1_riv'])
    """
    check_order(order, "spatial_bn")
    blob_out = blob_out or model.net.NextName()
    if model.init_params:
        # as in Caffe2: a given initializer class is configured by the default ConstantFill tuple
        def resolve(init, value):
            if init is not None and not isinstance(init, type) and getattr(init, "operator_name", None):
                return init  # a configured instance, e.g. Initializer("GaussianFill", std=0.1)
            return initializers.update_initializer(init, ("ConstantFill", {"value": value}), ("ConstantFill", {}))

        ScaleInitializer = resolve(ScaleInitializer, init_scale)
        BiasInitializer = resolve(BiasInitializer, init_bias)
        RunningMeanInitializer = resolve(RunningMeanInitializer, 0.0)
        RunningVarianceInitializer = resolve(RunningVarianceInitializer, 1.0)
    else:
        ScaleInitializer = BiasInitializer = initializers.ExternalInitializer()
        RunningMeanInitializer = RunningVarianceInitializer = initializers.ExternalInitializer()
    name = str(blob_out)
    scale = model.create_param(param_name=name + "_s", shape=[dim_in], initializer=ScaleInitializer,
                               tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=name + "_b", shape=[dim_in], initializer=BiasInitializer,
                              tags=ParameterTags.BIAS)
    running_mean = model.create_param(param_name=name + "_rm", shape=[dim_in], initializer=RunningMeanInitializer,
                                      tags=ParameterTags.COMPUTED_PARAM)
    running_var = model.create_param(param_name=name + "_riv", shape=[dim_in],
                                     initializer=RunningVarianceInitializer, tags=ParameterTags.COMPUTED_PARAM)
    inputs = [blob_in, scale, bias, running_mean, running_var]
    if kwargs.get("is_test"):
        return add_op(model.net, "SpatialBN", inputs, [blob_out], order=order, **kwargs)
    outputs = [blob_out, running_mean, running_var, name + "_sm", name + "_siv"]
    return add_op(model.net, "SpatialBN", inputs, outputs, order=order, **kwargs)[0]


def instance_norm(model, blob_in, blob_out, dim_in, order="NCHW", **kwargs):
    """Add ``InstanceNorm([blob_in, <out>_s, <out>_b])`` (normalize each image's channels over
    their spatial dims) and its scale (ConstantFill 1, WEIGHT) and bias (0, BIAS).

    Training models (``is_test`` absent or 0) also get the outputs ``<out>_sm`` (saved mean)
    and ``<out>_siv`` (saved inverse std), as in Caffe2.

    Args:
        model: the ModelHelper.
        blob_in: input (N, C, H, W) for NCHW.
        blob_out: output name.
        dim_in: channels C.
        order: "NCHW" or "NHWC" (from the model's arg_scope).
        **kwargs: InstanceNorm arguments (``epsilon``, ``is_test``).

    Returns:
        BlobReference of the normalized output.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="in_doc")
        >>> y = instance_norm(m, "x", "inorm", dim_in=3)
        >>> list(m.net.Proto().op[0].output)
        ['inorm', 'inorm_sm', 'inorm_siv']
    """
    check_order(order, "instance_norm")
    blob_out = blob_out or model.net.NextName()
    name = str(blob_out)
    scale_init, bias_init = default_initializers(model, None, None, None, None,
                                                 default_weight=("ConstantFill", {"value": 1.0}),
                                                 default_bias=("ConstantFill", {"value": 0.0}))
    scale = model.create_param(param_name=name + "_s", shape=[dim_in], initializer=scale_init,
                               tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=name + "_b", shape=[dim_in], initializer=bias_init, tags=ParameterTags.BIAS)
    if kwargs.get("is_test"):
        return add_op(model.net, "InstanceNorm", [blob_in, scale, bias], [blob_out], order=order, **kwargs)
    return add_op(model.net, "InstanceNorm", [blob_in, scale, bias], [blob_out, name + "_sm", name + "_siv"],
                  order=order, **kwargs)[0]


def layer_norm(model, blob_in, blob_out, dim_in, axis=1, epsilon=1e-4, initial_scale=1.0, initial_bias=0.0):
    """Layer normalization as Caffe2's helper built it: ``LayerNorm`` (normalize over the dims
    from ``axis`` on) into ``[blob_out, <out>_mean, <out>_stdev]``, then the learned gain and
    shift: ``Mul(broadcast=1, axis) -> <out>_scaled`` with ``<out>_scale`` and
    ``Add(broadcast=1, axis) -> <out>_biased`` with ``<out>_bias``.

    Args:
        model: the ModelHelper.
        blob_in: input, e.g. (N, D).
        blob_out: name of the normalized (not yet scaled) output.
        dim_in: size of the scale and bias (the dim at ``axis``).
        axis: first normalized dim (default 1).
        epsilon: added to the variance (default 1e-4).
        initial_scale / initial_bias: initial values of ``<out>_scale`` (WEIGHT) and
            ``<out>_bias`` (BIAS).

    Returns:
        (``<out>_biased``, mean, stdev) BlobReferences.

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="ln_doc")
        >>> y, mean, std = layer_norm(m, "h", "ln", dim_in=8)
        >>> str(y), [op.type for op in m.net.Proto().op]
        ('ln_biased', ['LayerNorm', 'Mul', 'Add'])
    """
    name = str(blob_out)
    normalized, mean, stdev = add_op(model.net, "LayerNorm", [blob_in], [blob_out, name + "_mean", name + "_stdev"],
                                     axis=axis, epsilon=epsilon)
    scale_init, bias_init = default_initializers(model, None, None, None, None,
                                                 default_weight=("ConstantFill", {"value": initial_scale}),
                                                 default_bias=("ConstantFill", {"value": initial_bias}))
    scale = model.create_param(param_name=name + "_scale", shape=[dim_in], initializer=scale_init,
                               tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=name + "_bias", shape=[dim_in], initializer=bias_init,
                              tags=ParameterTags.BIAS)
    scaled = add_op(model.net, "Mul", [normalized, scale], [name + "_scaled"], broadcast=1, axis=axis)
    biased = add_op(model.net, "Add", [scaled, bias], [name + "_biased"], broadcast=1, axis=axis)
    return biased, mean, stdev
