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

from nbcaffe.helpers import fc as _fc
from nbcaffe.helpers import nonlinearity as _nonlinearity
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
