"""The layer every nbcaffe DB type shares: errors, modes, the atomic-write helpers and the
``DB`` / ``Cursor`` / ``Transaction`` base classes (Caffe2's ``db::DB`` interface).

Backends (``_minidb``, ``_lmdb``, ``_protodb``) subclass these; the public names are
re-exported by :mod:`nbcaffe.db`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

from nbcaffe import errors


class DBError(errors.NbcaffeError):
    """A database cannot be opened, written or read (missing file, wrong mode, unknown type)."""


class DBFormatError(DBError, errors.ProtoError):
    """A database's bytes are not what its format requires (a truncated or foreign file)."""


class Mode:
    """Caffe2's ``db::Mode`` values (``workspace.C.Mode.read`` etc.)."""

    read = READ = 0
    write = WRITE = 1
    new = NEW = 2


READ, WRITE, NEW = Mode.READ, Mode.WRITE, Mode.NEW
_MODE_NAMES = {"r": READ, "read": READ, "w": WRITE, "write": WRITE, "a": WRITE, "append": WRITE,
               "n": NEW, "new": NEW}
_MODE_TEXT = {READ: "read", WRITE: "write", NEW: "new"}


def parse_mode(mode) -> int:
    """READ/WRITE/NEW from a Mode value (0, 1, 2) or a name ('r', 'read', 'w', 'write', 'n', 'new')."""
    if isinstance(mode, str):
        try:
            return _MODE_NAMES[mode.lower()]
        except KeyError:
            raise DBError(f"unknown db mode {mode!r}; use 'r' (read), 'w' (write) or 'n' (new)") from None
    if mode in (READ, WRITE, NEW) and not isinstance(mode, bool):
        return int(mode)
    raise DBError(f"unknown db mode {mode!r}; use Mode.read (0), Mode.write (1) or Mode.new (2)")


def _as_bytes(data, what) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"db {what} must be bytes or str, got {type(data).__name__}")


# ------------------------------------------------------------------------- atomic file helpers

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path):
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _target_folder(path, what) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DBError(f"{what}: cannot create '{path}': folder '{folder}' does not exist")
    return folder


def _hidden_prefix(path) -> str:
    return "." + os.path.basename(os.path.abspath(path)) + "."


class _AtomicFile:
    """A file written beside ``path`` under a hidden name and moved onto ``path`` by publish()."""

    def __init__(self, path, what, copy_from=None):
        self.path = path
        self.folder = _target_folder(path, what)
        fd, self.tmp = tempfile.mkstemp(prefix=_hidden_prefix(path), suffix=".tmp", dir=self.folder)
        self.handle = os.fdopen(fd, "w+b")
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make checkpoints private
            if copy_from is not None:
                with open(copy_from, "rb") as source:
                    shutil.copyfileobj(source, self.handle)
        except BaseException:
            self.discard()
            raise

    def publish(self):
        handle = self.handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.folder)

    def discard(self):
        try:
            self.handle.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------------- base classes

class Cursor:
    """Iterates a DB's records in order (Caffe2's ``db::Cursor``); starts on the first record."""

    def supports_seek(self) -> bool:
        return False

    def seek(self, key):
        raise DBError(f"{type(self).__name__} does not support seek")

    def seek_to_first(self):
        raise NotImplementedError

    def next(self):
        raise NotImplementedError

    def valid(self) -> bool:
        raise NotImplementedError

    def key(self) -> bytes:
        raise NotImplementedError

    def value(self) -> bytes:
        raise NotImplementedError

    def _check_valid(self):
        if not self.valid():
            raise DBError("cursor is past the last record (check valid() before key()/value())")

    def __iter__(self):
        """(key, value) pairs from the current record to the end."""
        while self.valid():
            yield self.key(), self.value()
            self.next()


class Transaction:
    """Writes records into a DB opened for writing (Caffe2's ``db::Transaction``)."""

    def __init__(self, db):
        self._db = db

    def put(self, key, value):
        """Store ``value`` (bytes) under ``key`` (bytes or str)."""
        self._db._check_open()
        self._db._put(_as_bytes(key, "key"), _as_bytes(value, "value"))
        self._db._pending = True

    def commit(self):
        """Make the records put so far durable in the DB's new copy (visible at ``close()``)."""
        self._db._check_open()
        self._db._commit()
        self._db._pending = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self._db._closed:
            self.commit()


class DB:
    """One open database.  Subclasses implement the _hooks; the public API is Caffe2's."""

    db_type = ""
    stores_tensor_protos = False  # ProtoDB: values are TensorProtos, not BlobProtos

    def __init__(self, path, mode):
        self.path = os.fspath(path)
        self.mode = mode
        self._closed = True  # subclasses set False once fully open: a failed open owns nothing
        self._pending = False

    @classmethod
    def check_available(cls):
        """Raise DBError when an optional dependency of this DB type is missing."""

    def __repr__(self):
        state = "closed" if self._closed else _MODE_TEXT[self.mode]
        return f"<{type(self).__name__} '{self.path}' ({state})>"

    def _check_open(self):
        if self._closed:
            raise DBError(f"{self.db_type} '{self.path}' is closed")

    def new_cursor(self) -> Cursor:
        """A cursor on the first record (READ mode only)."""
        self._check_open()
        if self.mode != READ:
            raise DBError(f"{self.db_type} '{self.path}': cursors need a DB opened with mode 'r' (read),"
                          f" this one is opened for {_MODE_TEXT[self.mode]}")
        return self._cursor()

    def new_transaction(self) -> Transaction:
        """A transaction that puts records (modes 'w' and 'n' only)."""
        self._check_open()
        if self.mode == READ:
            raise DBError(f"{self.db_type} '{self.path}' is opened for reading; open it with mode 'w' or 'n'"
                          f" to write")
        return Transaction(self)

    def close(self):
        """Release the DB.  A DB opened for writing is published here, atomically and complete."""
        if self._closed:
            return
        try:
            if self.mode != READ:
                self._publish()
            else:
                self._release()
        except BaseException:
            self._closed = True
            if self.mode != READ:
                self._discard()
            raise
        self._closed = True
        self._pending = False

    def abort(self):
        """Throw away everything written since opening; the DB on disk stays as it was."""
        if self._closed:
            return
        self._closed = True
        if self.mode != READ:
            self._discard()
        else:
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self):
        if getattr(self, "_closed", True):
            return
        try:
            if self.mode != READ and self._pending:
                # puts that were never committed: treat as an interrupted write, keep the old DB
                warnings.warn(f"{self.db_type} '{self.path}' was garbage-collected with uncommitted puts;"
                              f" they were discarded (call commit() and close())", ResourceWarning,
                              stacklevel=2)
                self.abort()
            else:
                self.close()
        except Exception:
            pass

    # hooks
    def _cursor(self):
        raise NotImplementedError

    def _put(self, key, value):
        raise NotImplementedError

    def _commit(self):
        pass

    def _publish(self):
        raise NotImplementedError

    def _discard(self):
        raise NotImplementedError

    def _release(self):
        pass


# ------------------------------------------------------------------------- reading helpers

_MAGICS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"PK\x03\x04", "a zip archive"),
           (b"\x93NUMPY", "a NumPy .npy file"), (b"\x1f\x8b", "a gzip file"), (b"\x80", "a Python pickle"))


def _looks_like(head: bytes) -> str:
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return f" (it looks like {name})"
    return ""


def _open_for_reading(path, what):
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise DBError(f"{what}: '{path}' is a directory, not a {what} file (an lmdb database? pass"
                      f" db_type='lmdb')") from None
    except OSError as exc:
        raise DBError(f"{what}: cannot open '{path}' for reading: {exc.strerror}") from None
