"""Key-value databases with Caffe2's Python surface (``workspace.C.create_db`` and friends).

    >>> from nbcaffe import db
    >>> out = db.create_db("minidb", "/tmp/example.minidb", "n")     # doctest: +SKIP
    >>> txn = out.new_transaction(); txn.put("key", b"value"); txn.commit()
    >>> out.close()                                  # the file appears here, complete
    >>> cursor = db.create_db("minidb", "/tmp/example.minidb", "r").new_cursor()
    >>> cursor.key(), cursor.value()
    (b'key', b'value')

DB types (names as Caffe2 registered them):

* ``minidb`` / ``MiniDB`` -- Caffe2's portable file format: records
  ``[int32 key_len][int32 value_len][key][value]``, little-endian, no header, no index.
* ``lmdb`` / ``LMDB`` -- an LMDB environment directory (``data.mdb``, ``lock.mdb``) through the
  optional ``lmdb`` package (``pip install lmdb``), imported only when used.
* ``protodb`` / ``ProtoDB`` -- one serialized ``TensorProtos``; key = tensor name, value =
  serialized ``TensorProto`` (as Caffe2's ProtoDB).

Modes follow Caffe2's ``db::Mode``: ``READ`` ("r"), ``WRITE`` ("w": add to an existing DB) and
``NEW`` ("n": replace it).

**Writes are atomic.**  A DB opened for writing builds a complete new copy beside the target
(a hidden temporary file or directory in the same folder), and ``close()`` flushes it to disk
(fsync) and moves it onto the target in one rename (``os.replace``; LMDB directories are
swapped with ``renameat2(RENAME_EXCHANGE)`` where the kernel offers it, else with two renames
and a backup that readers restore).  At every instant the target is either the old complete
DB or the new complete one; a crash or an exception mid-save leaves the old one untouched.
``commit()`` makes the records written so far durable in the temporary copy; they become
visible at ``close()``.  ``abort()`` (and leaving a ``with`` block by an exception) throws the
new copy away.

Reading checks structure before returning anything: a truncated or foreign file raises
:class:`DBFormatError` (an ``nbcaffe.errors.ProtoError``) naming the file, the record index,
the byte offset and what was expected there.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import struct
import sys
import tempfile
import warnings

from google.protobuf import message as _message

from nbcaffe import errors
from nbcaffe.proto import caffe2_pb2


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


# ------------------------------------------------------------------------- minidb

_HEADER = struct.Struct("<ii")
_INT32_MAX = 2 ** 31 - 1
_MAGICS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"PK\x03\x04", "a zip archive"),
           (b"\x93NUMPY", "a NumPy .npy file"), (b"\x1f\x8b", "a gzip file"), (b"\x80", "a Python pickle"))


def _looks_like(head: bytes) -> str:
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return f" (it looks like {name})"
    return ""


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


def _open_for_reading(path, what):
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise DBError(f"{what}: '{path}' is a directory, not a {what} file (an lmdb database? pass"
                      f" db_type='lmdb')") from None
    except OSError as exc:
        raise DBError(f"{what}: cannot open '{path}' for reading: {exc.strerror}") from None


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


# ------------------------------------------------------------------------- lmdb

LMDB_MAP_SIZE = 1 << 40  # Caffe2's 1 TB address space; the file grows only as needed


def _lmdb_module():
    try:
        import lmdb
    except ImportError:
        raise DBError("db_type 'lmdb' needs the `lmdb` package, which is not installed: pip install lmdb"
                      " (or pip install 'nbcaffe[data]')") from None
    return lmdb


_renameat2 = []


def _exchange(a, b) -> bool:
    """Atomically swap two directory entries (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    if not _renameat2:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _renameat2.append(fn)
    fn = _renameat2[0]
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _backups(path):
    pattern = os.path.join(os.path.dirname(os.path.abspath(path)), glob.escape(_hidden_prefix(path)) + "old-*")
    return sorted(glob.glob(pattern), key=os.path.getmtime)


def _swap_directory_into_place(tmp, path):
    """Make directory ``tmp`` appear at ``path``, replacing a previous directory there."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif not os.path.isdir(path) or os.path.islink(path):
        raise DBError(f"lmdb: cannot replace '{path}': it is not an lmdb directory")
    elif _exchange(tmp, path):
        shutil.rmtree(tmp)  # holds the previous database now
    else:
        # Two renames; in between, the old database is complete under the backup name and
        # LMDB(READ) puts it back if a crash left no database at `path`.
        backup = tempfile.mkdtemp(prefix=_hidden_prefix(path) + "old-", dir=folder)
        os.rmdir(backup)
        os.rename(path, backup)
        os.rename(tmp, path)
        shutil.rmtree(backup)
    _fsync_dir(folder)


def _restore_lmdb_backup(path):
    """After a crash between the two renames of a fallback swap, put the old database back."""
    if os.path.lexists(path):
        return
    found = _backups(path)
    if found:
        try:
            os.rename(found[-1], path)
        except OSError:
            pass


class LMDBCursor(Cursor):
    def __init__(self, db):
        self._db = db
        self._txn = db._env.begin(buffers=False)
        self._cur = self._txn.cursor()
        self._valid = self._cur.first()

    def supports_seek(self):
        return True

    def seek(self, key):
        """Move to the first record whose key is >= ``key`` (LMDB keys are sorted)."""
        self._valid = self._cur.set_range(_as_bytes(key, "key"))

    def seek_to_first(self):
        self._valid = self._cur.first()

    def next(self):
        self._valid = self._cur.next()

    def valid(self):
        return self._valid

    def key(self):
        self._check_valid()
        return self._cur.key()

    def value(self):
        self._check_valid()
        return self._cur.value()


class LMDB(DB):
    """An LMDB environment directory; written into a new directory that replaces the old one."""

    db_type = "lmdb"

    @classmethod
    def check_available(cls):
        _lmdb_module()

    def __init__(self, path, mode):
        lmdb = _lmdb_module()
        super().__init__(path, mode)
        self._env = None
        self._txn = None
        self._tmp = None
        if mode == READ:
            _restore_lmdb_backup(self.path)
            if not os.path.isdir(self.path):
                state = "is a file, not an lmdb directory" if os.path.exists(self.path) else "does not exist"
                raise DBError(f"lmdb: cannot open '{self.path}' for reading: it {state}")
            self._env = _shared_read_env(self.path)
            self._shared = True
            self._closed = False
            return
        folder = _target_folder(self.path, "lmdb")
        self._tmp = tempfile.mkdtemp(prefix=_hidden_prefix(self.path), suffix=".tmp", dir=folder)
        try:
            os.chmod(self._tmp, 0o777 & ~_umask())
            existing = os.path.join(self.path, "data.mdb")
            if mode == WRITE and os.path.isfile(existing):
                shutil.copyfile(existing, os.path.join(self._tmp, "data.mdb"))
            self._env = lmdb.open(self._tmp, map_size=LMDB_MAP_SIZE, subdir=True, max_dbs=0)
        except BaseException as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            if isinstance(exc, lmdb.InvalidError):
                raise DBFormatError(f"lmdb '{self.path}': data.mdb is not an LMDB file ({exc})") from None
            raise
        self._closed = False

    def _cursor(self):
        return LMDBCursor(self)

    def _put(self, key, value):
        lmdb = _lmdb_module()
        if self._txn is None:
            self._txn = self._env.begin(write=True)
        try:
            self._txn.put(key, value)
        except lmdb.BadValsizeError:
            raise DBError(f"lmdb '{self.path}': key of {len(key)} bytes exceeds LMDB's key limit of"
                          f" {self._env.max_key_size()} bytes") from None

    def _commit(self):
        if self._txn is not None:
            self._txn.commit()
            self._txn = None

    def _publish(self):
        self._commit()
        self._env.sync(True)
        self._env.close()
        self._env = None
        _swap_directory_into_place(self._tmp, self.path)

    def _discard(self):
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        if self._env is not None:
            self._env.close()
            self._env = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _release(self):
        if getattr(self, "_shared", False):
            _release_read_env(self.path)
        else:
            self._env.close()


# The lmdb package allows one open Environment per path in a process ("already open in this
# process"), while a train and a test net, or an init net run twice, each open a reader on the
# same DB.  Readers therefore share one read-only Environment per path, reference counted and
# reopened when the directory was replaced by a new save.
_READ_ENVS: dict = {}


def _stamp(path):
    st = os.stat(os.path.join(path, "data.mdb"))
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _shared_read_env(path):
    lmdb = _lmdb_module()
    key = os.path.realpath(path)
    try:
        stamp = _stamp(path)
    except OSError as exc:
        raise DBError(f"lmdb: cannot open '{path}' for reading: {exc}") from None
    entry = _READ_ENVS.get(key)
    if entry is not None and entry[2] != stamp:
        if entry[1] > 0:
            raise DBError(f"lmdb '{path}' was replaced on disk while a reader still has the old version open;"
                          f" close or recreate that reader first")
        entry[0].close()
        entry = None
    if entry is None:
        try:
            env = lmdb.open(path, readonly=True, lock=False, subdir=True, max_dbs=0)
        except lmdb.InvalidError as exc:
            raise DBFormatError(f"lmdb '{path}': data.mdb is not an LMDB file ({exc})") from None
        except lmdb.Error as exc:
            raise DBError(f"lmdb: cannot open '{path}' for reading: {exc}") from None
        entry = _READ_ENVS[key] = [env, 0, stamp]
    entry[1] += 1
    return entry[0]


def _release_read_env(path):
    key = os.path.realpath(path)
    entry = _READ_ENVS.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        entry[0].close()
        del _READ_ENVS[key]


# ------------------------------------------------------------------------- protodb

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


# ------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type] = {}
_NOT_IMPLEMENTED = ("leveldb", "rocksdb", "zmqdb")


def register_db(cls, *names):
    """Register a DB class under one or more type names (Caffe2's REGISTER_CAFFE2_DB)."""
    for name in names:
        if name in _REGISTRY:
            raise DBError(f"db type '{name}' is registered twice")
        _REGISTRY[name] = cls
    return cls


register_db(MiniDB, "MiniDB", "minidb")
register_db(LMDB, "LMDB", "lmdb")
register_db(ProtoDB, "ProtoDB", "protodb")


def registered_dbs() -> list:
    """Names of every registered DB type (Caffe2's ``C.registered_dbs()``)."""
    return sorted(_REGISTRY)


def db_class(db_type):
    """The DB class for a type name (exact, else case-insensitive); DBError naming the known types."""
    cls = _REGISTRY.get(db_type)
    if cls is None:
        lower = str(db_type).lower()
        matches = {c for name, c in _REGISTRY.items() if name.lower() == lower}
        if len(matches) == 1:
            cls = matches.pop()
    if cls is None:
        note = ""
        if str(db_type).lower() in _NOT_IMPLEMENTED:
            note = f" nbcaffe does not implement {db_type}; save to minidb or lmdb instead."
        elif not db_type:
            note = " No db_type was given."
        raise DBError(f"unknown db_type '{db_type}'; registered: {', '.join(registered_dbs())}.{note}"
                      f"{errors.did_you_mean(str(db_type), _REGISTRY)}")
    return cls


def create_db(db_type, path, mode):
    """Open a DB: ``create_db('minidb', path, 'r' | 'w' | 'n')`` (or Mode.read/write/new)."""
    return db_class(db_type)(os.fspath(path), parse_mode(mode))


def db_exists(db_type, path) -> bool:
    """Whether ``path`` opens as a DB of ``db_type`` (Caffe2's ``db::DBExists``).

    An unknown type or a missing optional package raises; a missing or unreadable DB is False.
    """
    cls = db_class(db_type)
    cls.check_available()
    try:
        cls(os.fspath(path), READ).close()
    except (DBError, OSError):
        return False
    return True


# ------------------------------------------------------------------------- DBReader

class DBReader:
    """An open DB and a cursor over it: what ``CreateDB`` produces and readers such as ``Load``
    and ``TensorProtosDBInput`` take as input.

    With ``num_shards > 1`` the reader starts at record ``shard_id`` and :meth:`read` steps
    ``num_shards`` records at a time, wrapping around at the end (Caffe2's ``db::DBReader``).
    """

    def __init__(self, db_type, source, num_shards=1, shard_id=0):
        if num_shards < 1 or not 0 <= shard_id < num_shards:
            raise DBError(f"DBReader: need num_shards >= 1 and 0 <= shard_id < num_shards, got"
                          f" num_shards={num_shards}, shard_id={shard_id}")
        self.db_type = str(db_type)
        self.source = os.fspath(source)
        self.num_shards = int(num_shards)
        self.shard_id = int(shard_id)
        self.db = create_db(db_type, source, READ)
        self.cursor = self.db.new_cursor()
        self._move_to_beginning()

    def _move_to_beginning(self):
        self.cursor.seek_to_first()
        for _ in range(self.shard_id):
            self.cursor.next()
            if not self.cursor.valid():
                raise DBError(f"DBReader: {self.db_type} '{self.source}' has fewer records than"
                              f" shard_id={self.shard_id}")

    def read(self):
        """(key, value) of the current record; then step to this shard's next record."""
        if not self.cursor.valid():
            raise DBError(f"DBReader: {self.db_type} '{self.source}' has no records to read")
        key, value = self.cursor.key(), self.cursor.value()
        for _ in range(self.num_shards):
            self.cursor.next()
            if not self.cursor.valid():
                self._move_to_beginning()
                break
        return key, value

    def seek(self, key):
        """Position the cursor on ``key`` (used when a serialized reader is restored)."""
        self.cursor.seek(key)
        if not self.cursor.valid():
            self._move_to_beginning()

    def close(self):
        self.db.close()

    def _config(self):
        return (self.db_type, self.source, self.num_shards, self.shard_id)

    def __eq__(self, other):
        if not isinstance(other, DBReader):
            return NotImplemented
        return self._config() == other._config()

    def __hash__(self):
        return hash(self._config())

    def __repr__(self):
        shard = f", shard {self.shard_id}/{self.num_shards}" if self.num_shards > 1 else ""
        return f"DBReader({self.db_type} '{self.source}'{shard})"


__all__ = ["DB", "DBError", "DBFormatError", "DBReader", "Cursor", "Transaction", "Mode", "READ", "WRITE", "NEW",
           "create_db", "db_exists", "db_class", "registered_dbs", "register_db", "parse_mode", "MiniDB", "LMDB",
           "ProtoDB", "parse_tensor_protos"]
