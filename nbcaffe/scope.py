"""Thread-local name and device scopes (Caffe2's ``scope`` module).

``NameScope("gpu_0")`` prefixes string blob names given to net builders with ``gpu_0/``;
nested scopes join with ``/``.  ``DeviceScope(option)`` makes every operator created
inside it carry that DeviceOption.
"""

from __future__ import annotations

import contextlib
import threading

_NAMESCOPE_SEPARATOR = "/"
_local = threading.local()


def CurrentNameScope() -> str:
    """The active name prefix, '' or ending in '/'."""
    return getattr(_local, "namescope", "")


def CurrentDeviceScope():
    """The active DeviceOption, or None."""
    return getattr(_local, "devicescope", None)


@contextlib.contextmanager
def NameScope(prefix, reset=False):
    """Prefix blob names created inside the block with ``prefix/``.

    Args:
        prefix: the scope name (str or BlobReference); ``None`` or '' adds nothing.
        reset: start from the root instead of nesting inside the current scope.

    Example:
        >>> with NameScope("gpu_0"):
        ...     with NameScope("conv"):
        ...         CurrentNameScope()
        'gpu_0/conv/'
    """
    assert isinstance(prefix, str) or prefix is None or hasattr(prefix, "_name"), \
        "NameScope takes a string"
    prefix = str(prefix) if prefix is not None else ""
    old = CurrentNameScope()
    if reset:
        new = ""
    else:
        new = old
    if prefix:
        new = new + prefix + _NAMESCOPE_SEPARATOR
    _local.namescope = new
    try:
        yield
    finally:
        _local.namescope = old


@contextlib.contextmanager
def DeviceScope(scope, node_name=None):
    """Make ops created in the block run under DeviceOption ``scope``.

    ``node_name`` (if given) is stored in the option's ``node_name`` field.
    """
    from nbcaffe.proto import caffe2_pb2

    new = caffe2_pb2.DeviceOption()
    if scope is not None:
        new.CopyFrom(scope)
    if node_name:
        new.node_name = node_name
    old = CurrentDeviceScope()
    _local.devicescope = new if scope is not None or node_name else None
    try:
        yield
    finally:
        _local.devicescope = old


@contextlib.contextmanager
def EmptyNameScope():
    """Run the block with no name prefix."""
    old = CurrentNameScope()
    _local.namescope = ""
    try:
        yield
    finally:
        _local.namescope = old


@contextlib.contextmanager
def EmptyDeviceScope():
    """Run the block with no device scope (ops get no device_option)."""
    old = CurrentDeviceScope()
    _local.devicescope = None
    try:
        yield
    finally:
        _local.devicescope = old
