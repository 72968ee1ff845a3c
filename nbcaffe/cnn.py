"""CNNModelHelper: the Caffe2-tutorial spelling (``m.FC(...)``, ``m.Relu(...)``) of the brew
helpers.  Each method calls the brew helper of the same name with this model, so there is
one implementation behind both spellings; methods without a helper fall through to the net
(``m.Sigmoid(...)`` adds a Sigmoid op)."""

from __future__ import annotations

from nbcaffe import brew
from nbcaffe.model_helper import ModelHelper

# CNNModelHelper method -> brew helper name.
_METHODS = {
    "FC": "fc", "Relu": "relu", "Tanh": "tanh", "Softmax": "softmax", "LeakyRelu": "leaky_relu",
    "Conv": "conv", "ConvNd": "conv_nd", "ConvTranspose": "conv_transpose", "GroupConv": "group_conv",
    "MaxPool": "max_pool", "AveragePool": "average_pool", "MaxPoolWithIndex": "max_pool_with_index",
    "SpatialBN": "spatial_bn", "LRN": "lrn", "Dropout": "dropout", "Concat": "concat",
    "DepthConcat": "depth_concat", "Sum": "sum", "Transpose": "transpose", "PRelu": "prelu",
    "InstanceNorm": "instance_norm", "Iter": "iter", "Accuracy": "accuracy", "ImageInput": "image_input",
    "PadImage": "pad_image", "AddWeightDecay": "add_weight_decay", "PackedFC": "packed_fc",
    "GroupConv_Deprecated": "group_conv_deprecated",
}


class CNNModelHelper(ModelHelper):
    """A ModelHelper whose arg_scope carries ``order``, ``use_cudnn`` and
    ``cudnn_exhaustive_search`` (and ``ws_nbytes_limit`` when set).

    Example:
        >>> m = CNNModelHelper(name="cnn_doc")
        >>> str(m.FC("data", "fc1", dim_in=4, dim_out=2))
        'fc1'
    """

    def __init__(self, order="NCHW", name=None, use_cudnn=True, cudnn_exhaustive_search=False,
                 ws_nbytes_limit=None, init_params=True, skip_sparse_optim=False, param_model=None):
        cnn_arg_scope = {"order": order, "use_cudnn": use_cudnn, "cudnn_exhaustive_search": cudnn_exhaustive_search}
        if ws_nbytes_limit:
            cnn_arg_scope["ws_nbytes_limit"] = ws_nbytes_limit
        super().__init__(skip_sparse_optim=skip_sparse_optim, name="CNN" if name is None else name,
                         init_params=init_params, param_model=param_model, arg_scope=cnn_arg_scope)
        if order not in ("NCHW", "NHWC"):
            raise ValueError(f"Cannot understand the CNN storage order {order}.")
        self.order = order
        self.use_cudnn = use_cudnn
        self.cudnn_exhaustive_search = cudnn_exhaustive_search
        self.ws_nbytes_limit = ws_nbytes_limit

    @property
    def CPU(self):
        from nbcaffe import core

        return core.DeviceOption(core.CPU, 0)

    @property
    def GPU(self, gpu_id=0):
        from nbcaffe import core

        return core.DeviceOption(core.CUDA, gpu_id)

    def __getattr__(self, name):
        helper_name = _METHODS.get(name)
        if helper_name is not None and brew.has_helper(helper_name):
            helper = getattr(brew, helper_name)

            def method(*args, **kwargs):
                return helper(self, *args, **kwargs)

            method.__name__ = name
            method.__doc__ = helper.__doc__
            return method
        return super().__getattr__(name)
