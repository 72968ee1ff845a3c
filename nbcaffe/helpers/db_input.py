"""brew.db_input: a DB reader in the init net and a TensorProtosDBInput op in the main net."""

from __future__ import annotations

from nbcaffe.helpers.tools import add_op


def db_input(model, blobs_out, batch_size, db, db_type="minidb"):
    """Read batches of TensorProtos rows from the DB at ``db``.

    Adds ``CreateDB([], "dbreader_<db>", db=db, db_type=db_type)`` to ``param_init_net`` and
    ``TensorProtosDBInput(reader, blobs_out, batch_size=batch_size)`` to ``net``: every run
    of the net stacks the next ``batch_size`` rows (one output per tensor of a row) on a new
    leading dim, wrapping around at the end of the DB.

    Args:
        model: the ModelHelper.
        blobs_out: output names, one per tensor in each row (e.g. ``["data", "label"]``).
        batch_size: rows per run (0: one row, no batch dim).
        db: DB path (e.g. written by :func:`nbcaffe.datasets.write_tensor_protos_db`).
        db_type: "minidb" (default here; Caffe2 required it), "lmdb", ...

    Returns:
        The output BlobReference(s).

    Example:
        >>> from nbcaffe import model_helper
        >>> m = model_helper.ModelHelper(name="db_input_doc")
        >>> data, label = db_input(m, ["data", "label"], batch_size=64, db="train.lmdb", db_type="lmdb")
        >>> m.param_init_net.Proto().op[0].type, m.net.Proto().op[0].type
        ('CreateDB', 'TensorProtosDBInput')
    """
    reader = add_op(model.param_init_net, "CreateDB", [], "dbreader_" + str(db), db=db, db_type=db_type)
    return add_op(model.net, "TensorProtosDBInput", reader, blobs_out, batch_size=batch_size)
