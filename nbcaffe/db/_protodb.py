"""``protodb``: one serialized ``TensorProtos``; key = tensor name, value = serialized
``TensorProto`` (Caffe2's ProtoDB).  Held in memory, written atomically at ``close()``."""

from __future__ import annotations

import os

from google.protobuf import message as _message

from nbcaffe.db._common import (
    DB,
    READ,
    WRITE,
    Cursor,
    DBError,
    DBFormatError,
    _AtomicFile,
    _looks_like,
    _open_for_reading,
    _target_folder,
)
from nbcaffe.proto import caffe2_pb2


def _unknown_field_count(msg) -> int:
    try:
        from google.protobuf import unknown_fields
    except ImportError:  # very old protobuf: skip the foreign-file check
        return 0
    return len(unknown_fields.UnknownFieldSet(msg))


def parse_tensor_protos(data: bytes, path) -> caffe2_pb2.TensorProtos:
    """The TensorProtos of a protodb file; DBFormatError for bytes of any other kind."""
    protos = caffe2_pb2.TensorProtos()
    try:
        protos.ParseFromString(data)
    except _message.DecodeError as exc:
        raise DBFormatError(f"protodb '{path}': its {len(data)} bytes are not a serialized caffe2.TensorProtos"
                            f"{_looks_like(data[:8])} ({exc})") from None
    if _unknown_field_count(protos) or any(_unknown_field_count(t) for t in protos.protos):
        raise DBFormatError(f"protodb '{path}': its {len(data)} bytes parse only with fields caffe2.TensorProtos"
                            f" does not define; this is not a protodb file{_looks_like(data[:8])}")
    for i, tensor in enumerate(protos.protos):
        if not tensor.name:
            raise DBFormatError(f"protodb '{path}': record #{i} is a TensorProto without a name (protodb keys"
                                f" are tensor names)")
    return protos


class ProtoDBCursor(Cursor):
    def __init__(self, db):
        self._protos = db._protos.protos
        self._i = 0

    def seek_to_first(self):
        self._i = 0

    def next(self):
        self._i += 1

    def valid(self):
        return self._i < len(self._protos)

    def key(self):
        self._check_valid()
        return self._protos[self._i].name.encode("utf-8")

    def value(self):
        self._check_valid()
        return self._protos[self._i].SerializeToString()


class ProtoDB(DB):
    """One serialized TensorProtos; each record is a TensorProto whose name is its key."""

    db_type = "protodb"
    stores_tensor_protos = True

    def __init__(self, path, mode):
        super().__init__(path, mode)
        self._protos = caffe2_pb2.TensorProtos()
        if mode == READ or (mode == WRITE and os.path.exists(self.path)):
            with _open_for_reading(self.path, "protodb") as handle:
                self._protos = parse_tensor_protos(handle.read(), self.path)
        if mode != READ:
            _target_folder(self.path, "protodb")
            self._names = {t.name for t in self._protos.protos}
        self._closed = False

    def _cursor(self):
        return ProtoDBCursor(self)

    def _put(self, key, value):
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise DBError(f"protodb '{self.path}': key {key!r} is not UTF-8 (it becomes a TensorProto name)") from None
        if name in self._names:
            raise DBError(f"protodb '{self.path}': an item with key '{name}' already exists")
        tensor = caffe2_pb2.TensorProto()
        try:
            tensor.ParseFromString(value)
        except _message.DecodeError as exc:
            raise DBFormatError(f"protodb '{self.path}': the value for key '{name}' is not a serialized"
                                f" TensorProto ({exc})") from None
        if not tensor.name:
            tensor.name = name
        elif tensor.name != name:
            raise DBError(f"protodb '{self.path}': key '{name}' differs from the tensor's name '{tensor.name}'")
        self._protos.protos.append(tensor)
        self._names.add(name)

    def _publish(self):
        writer = _AtomicFile(self.path, "protodb")
        try:
            writer.handle.write(self._protos.SerializeToString())
            writer.publish()
        except BaseException:
            writer.discard()
            raise

    def _discard(self):
        self._protos = caffe2_pb2.TensorProtos()
