"""brew: model-building helpers (``brew.fc(model, "data", "fc1", dim_in, dim_out)``).

Every helper takes the model first.  Before the helper runs, its keyword arguments are
completed from ``model.arg_scope`` (only the names the helper accepts, unless it takes
``**kwargs``) and then from any enclosing :func:`arg_scope`; explicit arguments win.  This is
a plain module of wrapped functions, so ``help(brew.fc)`` and IDE completion work.
"""

from __future__ import annotations

import copy
import functools
import inspect

from nbcaffe.helpers import algebra as _algebra
from nbcaffe.helpers import array_helpers as _array_helpers
from nbcaffe.helpers import conv as _conv
from nbcaffe.helpers import db_input as _db_input
from nbcaffe.helpers import dropout as _dropout
from nbcaffe.helpers import elementwise_linear as _elementwise_linear
from nbcaffe.helpers import fc as _fc
from nbcaffe.helpers import nonlinearity as _nonlinearity
from nbcaffe.helpers import normalization as _normalization
from nbcaffe.helpers import pooling as _pooling
from nbcaffe.helpers import tools as _tools
from nbcaffe.helpers import train as _train
from nbcaffe.helpers.arg_scope import arg_scope, get_current_scope  # noqa: F401

_HELPERS: dict = {}


def Register(helper):
    """Make ``helper(model, ...)`` available as ``brew.<name>`` with arg-scope handling."""
    name = helper.__name__
    if name in _HELPERS:
        raise AttributeError(f"Helper {name} already exists. Please change your helper name.")
    params = inspect.signature(helper).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    accepted = set(params)

    @functools.wraps(helper)
    def wrapper(*args, **kwargs):
        if args:
            model = args[0]
        elif "model" in kwargs:
            model = kwargs["model"]
        else:
            raise RuntimeError("The first input of helper function should be model. "
                               "Or you can provide it in kwargs as model=<your_model>.")
        new_kwargs = copy.deepcopy(getattr(model, "arg_scope", None) or {})
        if not takes_kwargs:
            new_kwargs = {k: v for k, v in new_kwargs.items() if k in accepted}
        new_kwargs.update(get_current_scope().get(name, {}))
        new_kwargs.update(kwargs)
        return helper(*args, **new_kwargs)

    wrapper.helper_name = name
    _HELPERS[name] = wrapper
    globals()[name] = wrapper
    return wrapper


def has_helper(helper_or_helper_name) -> bool:
    name = helper_or_helper_name if isinstance(helper_or_helper_name, str) else helper_or_helper_name.__name__
    return name in _HELPERS


fc = Register(_fc.fc)
relu = Register(_nonlinearity.relu)
sigmoid = Register(_nonlinearity.sigmoid)
tanh = Register(_nonlinearity.tanh)
leaky_relu = Register(_nonlinearity.leaky_relu)
elu = Register(_nonlinearity.elu)
softmax = Register(_nonlinearity.softmax)
iter = Register(_train.iter)  # noqa: A001  (Caffe2's helper name)
accuracy = Register(_train.accuracy)
add_weight_decay = Register(_train.add_weight_decay)
conv = Register(_conv.conv)
conv_nd = Register(_conv.conv_nd)
conv_transpose = Register(_conv.conv_transpose)
group_conv = Register(_conv.group_conv)
group_conv_deprecated = Register(_conv.group_conv_deprecated)
max_pool = Register(_pooling.max_pool)
average_pool = Register(_pooling.average_pool)
max_pool_with_index = Register(_pooling.max_pool_with_index)
lrn = Register(_normalization.lrn)
spatial_bn = Register(_normalization.spatial_bn)
instance_norm = Register(_normalization.instance_norm)
layer_norm = Register(_normalization.layer_norm)
dropout = Register(_dropout.dropout)
concat = Register(_array_helpers.concat)
depth_concat = Register(_array_helpers.depth_concat)
sum = Register(_algebra.sum)  # noqa: A001  (Caffe2's helper name)
transpose = Register(_algebra.transpose)
batch_mat_mul = Register(_algebra.batch_mat_mul)
elementwise_linear = Register(_elementwise_linear.elementwise_linear)
prelu = Register(_elementwise_linear.prelu)
db_input = Register(_db_input.db_input)
image_input = Register(_tools.image_input)
pad_image = Register(_tools.pad_image)
