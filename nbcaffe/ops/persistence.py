"""Persistence ops: Save, Checkpoint (alias Snapshot), Load, CreateDB, DBExists.

They read and write DBs (:mod:`nbcaffe.db`) of blobs serialized as Caffe2 does
(:mod:`nbcaffe.serialization`): one record per tensor chunk under ``<blob>#%<chunk>``, one per
other blob under its name.  A relative ``db`` path resolves against the workspace's root folder
(``ResetWorkspace(root_folder)``) unless ``absolute_path=1``; an absolute path is used as is.

These ops move whole blobs in and out of the workspace instead of filling preallocated output
tensors, so they bind their own host-side "kernel" (``op -> None``), re-run their logic on
every run (``values_dependent``) and have no gradient.  The same host functions serve CUDA
(nbcaffe/cuda/persistence.py): Save copies device tensors to the host, Load uploads onto the
op's GPU.  The ``REFERENCE`` engine runs the same host code (there is no separate NumPy path
for file I/O); each op's ``reference`` is an independent plain read for the test harness.

Saves are atomic (the DB appears complete or not at all; see nbcaffe/db.py) and loads are
transactional (every requested blob is read and checked before the workspace changes).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from nbcaffe import db as _db
from nbcaffe import errors, serialization
from nbcaffe.operator import Operator
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

SAVE_ARGS = {
    "db": Arg("str", "", "path of the DB to write (relative to the workspace root folder)"),
    "db_type": Arg("str", "minidb", "minidb | lmdb | protodb"),
    "absolute_path": Arg("bool", False, "use `db` as given instead of joining it to the root folder"),
    "strip_prefix": Arg("str", "", "drop each name up to and including this substring (e.g. 'gpu_0/')"),
    "blob_name_overrides": Arg("strings", (), "names to save the inputs under, one per input"),
    "chunk_size": Arg("int", -1, "elements per tensor chunk: -1 = 1,000,000 (default), 0 = one chunk"),
}


def resolve_path(root_folder, path, absolute_path) -> str:
    """``path`` joined to ``root_folder`` unless ``absolute_path`` (an absolute path stays as is)."""
    if absolute_path or not root_folder:
        return path
    return os.path.join(root_folder, path)


def _db_class(op, db_type):
    try:
        cls = _db.db_class(db_type)
        cls.check_available()
    except _db.DBError as exc:
        raise errors.ArgumentError(f"{op.where()}: {exc}") from None
    return cls


class PersistenceOp(Operator):
    """Base of the persistence ops: no preallocated outputs; the bound call does the I/O."""

    values_dependent = True
    gradient = None
    input_device = "any"

    def prepare(self, inputs):
        kernel = self.kernel if callable(self.kernel) else type(self).cpu  # the REFERENCE engine runs it too
        self._call = functools.partial(kernel, self, inputs)
        return []

    @staticmethod
    def infer(args, shapes, dtypes):
        return [], []


# ----------------------------------------------------------------------------- Save

def save_names(op, n_inputs):
    """The names the inputs are saved under (blob_name_overrides, or input names with
    strip_prefix applied); ArgumentError for a count mismatch or duplicates."""
    overrides = op.args["blob_name_overrides"]
    strip = op.args["strip_prefix"]
    if overrides and strip:
        raise errors.ArgumentError(f"{op.where()}: strip_prefix and blob_name_overrides are mutually exclusive")
    if overrides:
        if len(overrides) != n_inputs:
            raise errors.ArgumentError(f"{op.where()}: blob_name_overrides has {len(overrides)} names for"
                                       f" {n_inputs} input blob(s)")
        names = list(overrides)
    else:
        names = [serialization.strip_name(name, strip) for name in op.input_names]
    seen = set()
    for name in names:
        if not name:
            raise errors.ArgumentError(f"{op.where()}: cannot save a blob under an empty name")
        if name in seen:
            raise errors.ArgumentError(f"{op.where()}: two inputs would be saved under the same name '{name}'")
        seen.add(name)
    return names


def write_blobs(path, db_type, named_values, chunk_size, device_id=None):
    """Write ``[(name, value)]`` into a NEW DB at ``path``, atomically: on any error the DB that
    was there before is left untouched and no temporary file remains."""
    out = _db.create_db(db_type, path, _db.NEW)
    try:
        txn = out.new_transaction()
        protodb = out.stores_tensor_protos
        for name, value in named_values:
            detail = None
            if device_id is not None and not isinstance(value, np.ndarray) and hasattr(value, "copy_to_host"):
                detail = serialization.device_detail_of(value, device_id)
            for key, data in serialization.iter_blob_records(name, value, chunk_size, detail):
                txn.put(key, serialization.to_protodb_row(key, data) if protodb else data)
        txn.commit()
    except BaseException:
        out.abort()
        raise
    out.close()


def save_run(op, inputs):
    """Host kernel of Save (CPU and CUDA): serialize the inputs into the DB."""
    names = op.save_names
    path = resolve_path(op.ws.root_folder, op.args["db"], op.args["absolute_path"])
    write_blobs(path, op.args["db_type"], list(zip(names, inputs)), op.args["chunk_size"],
                getattr(op.ctx, "device_id", None) if op.ctx.device_type else None)


@register_op
class Save(PersistenceOp):
    """Write the input blobs into the DB at ``db`` (type ``db_type``), replacing it atomically.

    Tensors are saved in chunks of ``chunk_size`` elements under ``<name>#%<k>``; strings and
    DB readers under their names.  Names are the input names with everything up to and
    including ``strip_prefix`` removed, or ``blob_name_overrides``.  A relative ``db`` path
    resolves against the workspace root folder unless ``absolute_path=1``.  Inputs may live on
    any device (CUDA tensors are copied to the host).  Arguments: db, db_type ('minidb'),
    absolute_path (0), strip_prefix (''), blob_name_overrides ([]), chunk_size (-1: 1,000,000;
    0: no chunking).
    """

    inputs, outputs = ("X",), ()
    num_inputs = (1, None)
    args = dict(SAVE_ARGS)
    cpu = staticmethod(save_run)

    def setup(self):
        if not self.args["db"]:
            raise errors.ArgumentError(f"{self.where()}: argument 'db' (the DB path) is required")
        _db_class(self, self.args["db_type"])
        self.save_names = save_names(self, len(self.input_names))

    @staticmethod
    def reference(*inputs, **args):
        return ()


def checkpoint_path(pattern, iteration) -> str:
    """``pattern % iteration`` (C printf style, as Caffe2); a pattern without % is used as is."""
    if "%" not in pattern:
        return pattern
    try:
        return pattern % iteration
    except (TypeError, ValueError) as exc:
        raise errors.ArgumentError(f"db pattern {pattern!r} cannot take the iteration number: {exc}") from None


def checkpoint_run(op, inputs):
    """Host kernel of Checkpoint: Save when iteration % every == 0."""
    counter = inputs[0]
    if not isinstance(counter, np.ndarray):
        if not hasattr(counter, "copy_to_host"):
            raise errors.ShapeError(f"input 0 '{op.input_names[0]}' must be the iteration counter tensor, got a"
                                    f" {type(counter).__name__}")
        counter = op.read_host(counter)
    if counter.size != 1 or counter.dtype.kind not in "iu":
        raise errors.ShapeError(f"input 0 '{op.input_names[0]}' must hold one integer (the iteration), got"
                                f" {counter.shape} {counter.dtype.name}")
    iteration = int(counter.reshape(-1)[0])
    if iteration % op.args["every"]:
        return
    pattern = checkpoint_path(op.args["db"], iteration)
    path = resolve_path(op.ws.root_folder, pattern, op.args["absolute_path"])
    write_blobs(path, op.args["db_type"], list(zip(op.save_names, inputs)), op.args["chunk_size"],
                getattr(op.ctx, "device_id", None) if op.ctx.device_type else None)


@register_op(aliases=("Snapshot",))
class Checkpoint(Save):
    """Every ``every`` iterations, Save all inputs (the iteration counter, input 0, included) to
    the DB named by formatting the ``db`` pattern with the iteration (``'ckpt_%05d.minidb'``).

    Input 0 is the int iteration counter (one value, read on the host).  Other arguments as
    Save; ``every`` (1) must be positive.
    """

    op_type = "Checkpoint"  # not inherited from Save
    inputs = ("iter", "X")
    args = {**SAVE_ARGS, "every": 1}
    cpu = staticmethod(checkpoint_run)

    def setup(self):
        super().setup()
        if self.args["every"] < 1:
            raise errors.ArgumentError(f"{self.where()}: every={self.args['every']} must be positive")

    @staticmethod
    def reference(*inputs, **args):
        return ()


# ----------------------------------------------------------------------------- Load

def _cursor_records(cursor, stores_tensor_protos, strip_prefix, add_prefix, wanted, where_db):
    """Yield (blob name, BlobProto or bytes, where) for the records whose blob is wanted."""
    index = 0
    while cursor.valid():
        key = cursor.key()
        name = serialization.blob_name_from_key(key, strip_prefix, add_prefix)
        if wanted is None or name in wanted:
            where = f"{where_db}, record #{index} (key '{serialization.key_text(key)}')"
            value = cursor.value()
            if stores_tensor_protos:
                value = serialization.from_protodb_row(serialization.key_text(key), value, where)
            yield name, value, where
        cursor.next()
        index += 1


def _available_names(cursor, strip_prefix, add_prefix) -> list:
    """Blob names in a DB, in record order (for error messages)."""
    cursor.seek_to_first()
    names = {}
    while cursor.valid():
        names[serialization.blob_name_from_key(cursor.key(), strip_prefix, add_prefix)] = None
        cursor.next()
    return list(names)


def _list_text(names, limit=20) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def load_run(op, inputs):
    """Host kernel of Load (CPU and CUDA): read, check, place, then write the blobs."""
    args = op.args
    strip, add = args["strip_prefix"], args["add_prefix"]
    wanted = None if args["load_all"] else dict(op.source_indices)
    sources = []  # (description, db, cursor, owned)
    try:
        if inputs:
            for i, reader in enumerate(inputs):
                if not isinstance(reader, _db.DBReader):
                    raise errors.ShapeError(f"input {i} '{op.input_names[i]}' must be a DB reader (made by"
                                            f" CreateDB), got a {type(reader).__name__}")
                sources.append((f"{reader.db_type} '{reader.source}'", reader.db, reader.db.new_cursor(), False))
        else:
            for path in op.db_paths:
                full = resolve_path(op.ws.root_folder, path, args["absolute_path"])
                handle = _db.create_db(args["db_type"], full, _db.READ)
                sources.append((f"{args['db_type']} '{full}'", handle, handle.new_cursor(), True))
        assembler = serialization.BlobAssembler()
        owner = {}
        for db_index, (described, handle, cursor, _) in enumerate(sources):
            for name, blob, where in _cursor_records(cursor, handle.stores_tensor_protos, strip, add, wanted,
                                                     described):
                if owner.setdefault(name, db_index) != db_index:
                    raise errors.ProtoError(f"blob '{name}' is in two DBs: {sources[owner[name]][0]} and"
                                            f" {described} (Duplicate Key)")
                assembler.add(name, blob, where)
        loaded = assembler.finish()
        requested = list(op.source_indices) if not args["load_all"] else list(op.output_names)
        missing = [name for name in requested if name not in loaded]
        if missing and (args["load_all"] or not args["allow_incomplete"]):
            available = list(dict.fromkeys(name for _, _, cursor, _ in sources
                                           for name in _available_names(cursor, strip, add)))
            described = " and ".join(s[0] for s in sources)
            raise errors.BlobNotFoundError(
                f"{len(missing)} of {len(requested)} requested blob(s) are not in {described}:"
                f" {_list_text(missing)}. The DB has {len(available)} blob(s): {_list_text(available)}."
                f"{errors.did_you_mean(missing[0], available)} (add_prefix/strip_prefix/source_blob_names map"
                f" names; allow_incomplete=1 loads what exists)")
    finally:
        for _, handle, _, owned in sources:
            if owned:
                handle.close()
    placed = {}
    for name, (value, detail) in loaded.items():
        placed[name] = _place(op, value, detail)
    blobs = op.blobs
    if args["load_all"]:
        blobs.update(placed)
    else:
        for name, value in placed.items():
            blobs[op.output_names[op.source_indices[name]]] = value


def _place(op, value, detail):
    if not isinstance(value, np.ndarray) or value.dtype == object:
        return value  # strings, readers and string tensors live on the host
    if op.args["keep_device"]:
        return serialization.place(value, detail)
    if op.ctx.device_type:
        return serialization.to_device(op.ctx, value)
    return value


def _load_reference_values(readers, db_paths, db_type, root_folder, absolute_path, strip_prefix, add_prefix):
    """Independent plain read used by Load.reference: every record of every DB, deserialized."""
    values = {}
    handles = [(r.db, False) for r in readers] if readers else \
        [(_db.create_db(db_type, resolve_path(root_folder, p, absolute_path), _db.READ), True) for p in db_paths]
    for handle, owned in handles:
        cursor = handle.new_cursor()
        records = []
        for key, value in cursor:
            text = serialization.key_text(key)
            if handle.stores_tensor_protos:
                value = serialization.from_protodb_row(text, value, text)
            records.append((text, value))
        if owned:
            handle.close()
        for name, value in serialization.deserialize_blobs(records).items():
            values[serialization.blob_name_from_key(name, strip_prefix, add_prefix)] = value
    return values


@register_op
class Load(PersistenceOp):
    """Read blobs from DBs into the workspace: outputs = the blobs to load, matched by name.

    The DBs are the readers given as inputs (made by CreateDB), else ``db`` or ``dbs`` (paths;
    relative ones resolve against the workspace root folder unless ``absolute_path=1``) of type
    ``db_type``.  DB names are the record key cut at ``#%``, with everything up to and
    including ``strip_prefix`` removed and ``add_prefix`` prepended; ``source_blob_names``
    names the DB blobs to read into the outputs instead of the output names.  ``load_all=1``
    loads every blob of the DB(s).  Tensors go onto the op's device, or with ``keep_device=1``
    onto the device recorded at save time.  A requested blob that is missing raises (naming
    what the DB holds) unless ``allow_incomplete=1``; nothing is written unless all checks pass.
    Arguments: db, dbs, db_type ('minidb'), absolute_path (0), add_prefix (''), strip_prefix
    (''), keep_device (0), load_all (0), allow_incomplete (0), source_blob_names ([]); shape and
    dtype are accepted for Caffe2's static shape hint of a single output.
    """

    inputs, outputs = ("readers",), ("blobs",)
    num_inputs = (0, None)
    num_outputs = (0, None)
    args = {
        "db": Arg("str", "", "DB path"),
        "dbs": Arg("strings", (), "several DB paths"),
        "db_type": Arg("str", "minidb", "minidb | lmdb | protodb"),
        "absolute_path": Arg("bool", False, "use the paths as given instead of joining them to the root folder"),
        "add_prefix": Arg("str", "", "prepended to every loaded blob name"),
        "strip_prefix": Arg("str", "", "drop each DB name up to and including this substring"),
        "keep_device": Arg("bool", False, "load tensors onto the device they were saved from"),
        "load_all": Arg("bool", False, "load every blob of the DB(s)"),
        "allow_incomplete": Arg("bool", False, "do not fail when some outputs are missing from the DB(s)"),
        "source_blob_names": Arg("strings", (), "DB names to read into the outputs, one per output"),
        "shape": Arg("ints", (), "static shape hint for a single output"),
        "dtype": Arg("int", 1, "static TensorProto.DataType hint for a single output (FLOAT)"),
    }
    cpu = staticmethod(load_run)

    def setup(self):
        args = self.args
        where = self.where()
        if not self.input_names:
            if args["db"] and args["dbs"]:
                raise errors.ArgumentError(f"{where}: give either 'db' or 'dbs', not both")
            paths = list(args["dbs"]) or ([args["db"]] if args["db"] else [])
            if not paths:
                raise errors.ArgumentError(f"{where}: give the DB path as argument 'db' (or 'dbs'), or a DB"
                                           f" reader as input")
            if any(not p for p in paths) or len(set(paths)) != len(paths):
                raise errors.ArgumentError(f"{where}: 'dbs' has an empty or a duplicated path: {paths}")
            _db_class(self, args["db_type"])
            self.db_paths = paths
        sources = args["source_blob_names"]
        if sources and len(sources) != len(self.output_names):
            raise errors.ArgumentError(f"{where}: source_blob_names has {len(sources)} names for"
                                       f" {len(self.output_names)} output(s)")
        if sources and args["strip_prefix"]:
            raise errors.ArgumentError(f"{where}: strip_prefix and source_blob_names are mutually exclusive")
        if sources and args["load_all"]:
            raise errors.ArgumentError(f"{where}: load_all cannot be combined with source_blob_names")
        names = list(sources) or list(self.output_names)
        if len(set(names)) != len(names):
            raise errors.ArgumentError(f"{where}: duplicated source blob name in {names}")
        self.source_indices = {name: i for i, name in enumerate(names)}

    def reference_kwargs(self):
        kwargs = dict(self.args)
        kwargs["output_names"] = tuple(self.output_names)
        kwargs["root_folder"] = self.ws.root_folder
        return kwargs

    @staticmethod
    def reference(*readers, output_names=(), root_folder="", db="", dbs=(), db_type="minidb", absolute_path=False,
                  add_prefix="", strip_prefix="", load_all=False, allow_incomplete=False, source_blob_names=(),
                  **_):
        readers = [r.item() if isinstance(r, np.ndarray) else r for r in readers]
        values = _load_reference_values(readers, list(dbs) or [db], db_type, root_folder, absolute_path,
                                        strip_prefix, add_prefix)
        names = list(source_blob_names) or list(output_names)
        return tuple(values.get(name) for name in names)

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe import utils
        from nbcaffe.shape_inference import UnknownShape

        if len(op_def.output) == 1 and args["shape"]:
            return [tuple(args["shape"])], [utils.dtype_of(args["dtype"])]
        raise UnknownShape()


# ----------------------------------------------------------------------------- CreateDB

def create_db_run(op, inputs):
    """Host kernel of CreateDB: open a DB reader (a host object on every device)."""
    args = op.args
    reader = _db.DBReader(args["db_type"], args["db"], args["num_shards"], args["shard_id"])
    op.blobs[op.output_names[0]] = reader


@register_op
class CreateDB(PersistenceOp):
    """reader = a DB reader over ``db`` (type ``db_type``), for Load and DB input ops.

    As in Caffe2 the path is used as given (not joined to the root folder).  With
    ``num_shards > 1`` the reader yields every num_shards-th record starting at ``shard_id``.
    Arguments: db (required), db_type ('minidb'), num_shards (1), shard_id (0).
    """

    inputs, outputs = (), ("reader",)
    opaque_outputs = True  # a DBReader object, not a tensor
    args = {"db": Arg("str", "", "DB path", required=True), "db_type": Arg("str", "minidb", "minidb | lmdb | protodb"),
            "num_shards": 1, "shard_id": 0}
    cpu = staticmethod(create_db_run)

    def setup(self):
        if not self.args["db"]:
            raise errors.ArgumentError(f"{self.where()}: argument 'db' must not be empty")
        _db_class(self, self.args["db_type"])
        if self.args["num_shards"] < 1 or not 0 <= self.args["shard_id"] < self.args["num_shards"]:
            raise errors.ArgumentError(f"{self.where()}: need num_shards >= 1 and 0 <= shard_id < num_shards")

    @staticmethod
    def reference(db="", db_type="minidb", num_shards=1, shard_id=0):
        return (_db.DBReader(db_type, db, num_shards, shard_id),)

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        raise UnknownShape()


# ----------------------------------------------------------------------------- DBExists

def db_exists_at(path, db_type) -> bool:
    try:
        return _db.db_exists(db_type, path)
    except _db.DBError:
        return False  # Caffe2: any failure to open means "does not exist"


def db_exists_run(op, inputs):
    """Host kernel of DBExists: a bool scalar tensor on the op's device."""
    path = resolve_path(op.ws.root_folder, op.db_path, op.args["absolute_path"])
    exists = np.array(db_exists_at(path, op.args["db_type"]))
    op.blobs[op.output_names[0]] = serialization.to_device(op.ctx, exists) if op.ctx.device_type else exists


@register_op
class DBExists(PersistenceOp):
    """exists = whether the DB at ``db_name`` opens as a ``db_type`` DB (bool scalar).

    ``db_name`` is Caffe2's argument name (``db_path`` is accepted too); a relative path
    resolves against the workspace root folder unless ``absolute_path=1``.  Arguments:
    db_name, db_type ('minidb'), absolute_path (0).
    """

    inputs, outputs = (), ("exists",)
    args = {"db_name": Arg("str", "", "DB path"), "db_path": Arg("str", "", "same as db_name"),
            "db_type": Arg("str", "minidb", "minidb | lmdb | protodb"),
            "absolute_path": Arg("bool", False, "use the path as given")}
    cpu = staticmethod(db_exists_run)

    def setup(self):
        name, path = self.args["db_name"], self.args["db_path"]
        if name and path and name != path:
            raise errors.ArgumentError(f"{self.where()}: give the path as 'db_name' or 'db_path', not both")
        self.db_path = name or path
        if not self.db_path:
            raise errors.ArgumentError(f"{self.where()}: argument 'db_name' (the DB path) is required")

    @staticmethod
    def reference(db_name="", db_path="", db_type="minidb", absolute_path=False, root_folder=""):
        path = resolve_path(root_folder, db_name or db_path, absolute_path)
        return (np.array(db_exists_at(path, db_type)),)

    def reference_kwargs(self):
        return {**self.args, "root_folder": self.ws.root_folder}

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        return [()], [np.dtype(np.bool_)]


__all__ = ["Save", "Checkpoint", "Load", "CreateDB", "DBExists", "write_blobs", "resolve_path"]
