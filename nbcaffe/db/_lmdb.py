"""``lmdb``: an LMDB environment directory through the optional ``lmdb`` package (imported on
first use).  A write builds a new directory beside the target and swaps it into place at
``close()``; readers of one path share a single read-only Environment."""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import sys
import tempfile

from nbcaffe.db._common import (
    DB,
    READ,
    WRITE,
    Cursor,
    DBError,
    DBFormatError,
    _as_bytes,
    _fsync_dir,
    _hidden_prefix,
    _target_folder,
    _umask,
)

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
