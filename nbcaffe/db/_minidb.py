"""``minidb``: Caffe2's portable file format, records ``[int32 key_len][int32 value_len][key][value]``,
little-endian, with no header and no index.  Read through a validated record index, written
atomically through :class:`_AtomicFile`."""

from __future__ import annotations

import os
import struct

from nbcaffe.db._common import (
    DB,
    READ,
    WRITE,
    Cursor,
    DBError,
    DBFormatError,
    _as_bytes,
    _AtomicFile,
    _looks_like,
    _open_for_reading,
)

_HEADER = struct.Struct("<ii")
_INT32_MAX = 2 ** 31 - 1


def _scan_minidb(handle, path):
    """[(key offset, key length, value length)] for every record; DBFormatError on damage."""
    size = os.fstat(handle.fileno()).st_size
    index = []
    offset = 0
    what = ("minidb files are records [int32 key_len][int32 value_len][key][value], little-endian,"
            " with no file header")
    while offset < size:
        i = len(index)
        handle.seek(offset)
        header = handle.read(_HEADER.size)
        where = f"minidb '{path}': record #{i} at byte offset {offset}"
        after = f"; the file ends after record #{i - 1}'s value" if i else ""
        if len(header) < _HEADER.size:
            raise DBFormatError(
                f"{where}: expected an 8-byte record header (int32 key length, int32 value length) but"
                f" only {len(header)} byte(s) remain in the {size}-byte file: the file is truncated{after}")
        key_len, value_len = _HEADER.unpack(header)
        remaining = size - offset - _HEADER.size
        if key_len <= 0 or value_len <= 0 or key_len + value_len > remaining:
            if i == 0:
                head = header
                reason = f"this is not a minidb file{_looks_like(head)}: {what}"
            elif key_len > 0 and value_len > 0:
                reason = "the file is truncated (a save was cut short, or the file was copied partially)"
            else:
                reason = "the file is corrupt (lengths must be positive)"
            raise DBFormatError(
                f"{where}: the header announces a {key_len}-byte key and a {value_len}-byte value, but"
                f" {remaining} byte(s) follow it in the {size}-byte file; {reason}")
        index.append((offset + _HEADER.size, key_len, value_len))
        offset += _HEADER.size + key_len + value_len
    return index


class MiniDBCursor(Cursor):
    def __init__(self, db):
        self._db = db
        self._i = 0

    def supports_seek(self):
        return True

    def seek(self, key):
        """Move to the first record whose key is ``key`` (minidb is unordered: an exact match)."""
        key = _as_bytes(key, "key")
        for i in range(len(self._db._index)):
            self._i = i
            if self.key() == key:
                return
        self._i = len(self._db._index)

    def seek_to_first(self):
        self._i = 0

    def next(self):
        self._i += 1

    def valid(self):
        return self._i < len(self._db._index)

    def _read(self, offset, length):
        self._db._check_open()
        handle = self._db._file
        handle.seek(offset)
        data = handle.read(length)
        if len(data) != length:  # the file shrank since it was opened
            raise DBFormatError(f"minidb '{self._db.path}': record #{self._i}: expected {length} bytes at byte"
                                f" offset {offset}, read {len(data)}; the file changed while open")
        return data

    def key(self):
        self._check_valid()
        offset, key_len, _ = self._db._index[self._i]
        return self._read(offset, key_len)

    def value(self):
        self._check_valid()
        offset, key_len, value_len = self._db._index[self._i]
        return self._read(offset + key_len, value_len)


class MiniDB(DB):
    """Caffe2's minidb file format, read through a validated record index, written atomically."""

    db_type = "minidb"

    def __init__(self, path, mode):
        super().__init__(path, mode)
        self._file = None
        self._writer = None
        if mode == READ:
            self._file = _open_for_reading(self.path, "minidb")
            try:
                self._index = _scan_minidb(self._file, self.path)
            except BaseException:
                self._file.close()
                raise
        else:
            copy_from = None
            if mode == WRITE and os.path.exists(self.path):
                with _open_for_reading(self.path, "minidb") as existing:
                    _scan_minidb(existing, self.path)  # never append to a damaged file
                copy_from = self.path
            self._writer = _AtomicFile(self.path, "minidb", copy_from)
        self._closed = False

    def _cursor(self):
        return MiniDBCursor(self)

    def _put(self, key, value):
        if not key or not value:
            raise DBError(f"minidb '{self.path}': cannot store an empty {'key' if not key else 'value'}"
                          f" (Caffe2's minidb reader rejects zero-length keys and values)")
        if len(key) > _INT32_MAX or len(value) > _INT32_MAX:
            raise DBError(f"minidb '{self.path}': a record over 2 GiB does not fit minidb's int32 lengths;"
                          f" save with a smaller chunk_size")
        handle = self._writer.handle
        handle.write(_HEADER.pack(len(key), len(value)))
        handle.write(key)
        handle.write(value)

    def _commit(self):
        self._writer.handle.flush()
        os.fsync(self._writer.handle.fileno())

    def _publish(self):
        self._writer.publish()

    def _discard(self):
        self._writer.discard()

    def _release(self):
        self._file.close()
