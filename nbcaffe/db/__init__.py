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

import os

from nbcaffe import errors
from nbcaffe.db._common import (
    DB,
    NEW,
    READ,
    WRITE,
    Cursor,
    DBError,
    DBFormatError,
    Mode,
    Transaction,
    parse_mode,
)
from nbcaffe.db._lmdb import LMDB
from nbcaffe.db._lmdb import LMDB_MAP_SIZE as LMDB_MAP_SIZE
from nbcaffe.db._lmdb import LMDBCursor as LMDBCursor
from nbcaffe.db._minidb import MiniDB
from nbcaffe.db._minidb import MiniDBCursor as MiniDBCursor
from nbcaffe.db._protodb import ProtoDB, parse_tensor_protos
from nbcaffe.db._protodb import ProtoDBCursor as ProtoDBCursor

# The backends live in private modules by type (_minidb, _lmdb, _protodb) over a shared layer
# (_common: errors, modes, atomic writes, base classes); this module is the public surface.  The
# `X as X` imports re-export public names that are not in __all__ (cursor classes, map size).

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
