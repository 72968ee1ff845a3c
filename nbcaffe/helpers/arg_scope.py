"""``brew.arg_scope``: default keyword arguments for chosen helpers inside a block."""

from __future__ import annotations

import contextlib
import copy
import threading

_state = threading.local()


def get_current_scope() -> dict:
    """{helper name: {kwarg: value}} active in this thread."""
    if not hasattr(_state, "current_scope"):
        _state.current_scope = {}
    return _state.current_scope


@contextlib.contextmanager
def arg_scope(single_helper_or_list, **kwargs):
    """Inside the block, calls of the given helpers get ``kwargs`` as defaults (explicit
    arguments still win); scopes nest and the inner one wins.

    Example:
        >>> from nbcaffe import brew
        >>> with brew.arg_scope([brew.fc], axis=2):
        ...     pass
    """
    helpers = single_helper_or_list if isinstance(single_helper_or_list, (list, tuple)) else [single_helper_or_list]
    old = get_current_scope()
    new = copy.deepcopy(old)
    for helper in helpers:
        if not callable(helper):
            raise TypeError(f"arg_scope takes helper functions, got {helper!r}")
        name = getattr(helper, "helper_name", helper.__name__)
        merged = dict(new.get(name, {}))
        merged.update(kwargs)
        new[name] = merged
    _state.current_scope = new
    try:
        yield
    finally:
        _state.current_scope = old
