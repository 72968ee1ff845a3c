"""Model-zoo folders on a local disk (Caffe2's ``caffe2.python.models.download``, without the
network): ``<folder>/init_net.pb``, ``predict_net.pb`` and ``value_info.json``.

Caffe2 fetched missing models from its download server; nbcaffe never goes online.  Put the
folder there yourself (a Caffe2 model-zoo download, ``write_model`` output, a translated Caffe
model) and load it by path or by name under ``$CAFFE2_MODELS`` (default ``$CAFFE2_HOME/models``,
``~/.caffe2/models``).  A missing folder or file raises :class:`ModelNotFoundError` naming the
folder, the files it lacks and what it holds.

    python -m nbcaffe.models.download squeezenet [--dir DIR]   # check a model folder

Each net may also be protobuf text (``init_net.pbtxt`` / ``predict_net.pbtxt``).
``value_info.json`` maps the input blob to ``[TensorProto data type, shape]``, e.g.
``{"data": [1, [1, 3, 224, 224]]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np

from nbcaffe import errors, utils
from nbcaffe.proto import caffe2_pb2

FILES = ("predict_net.pb", "init_net.pb", "value_info.json")


class ModelNotFoundError(errors.NbcaffeError, FileNotFoundError):
    """A model folder or one of its files is missing (no download is attempted)."""


def models_dir(model_env_name="CAFFE2_MODELS") -> str:
    """Where named models live: ``$CAFFE2_MODELS``, else ``$CAFFE2_HOME/models`` (``~/.caffe2``)."""
    home = os.path.expanduser(os.getenv("CAFFE2_HOME", "~/.caffe2"))
    return os.getenv(model_env_name, os.path.join(home, "models"))


def _find(folder, stem, override):
    """Path of ``override`` or of ``<stem>.pb`` / ``<stem>.pbtxt`` in ``folder`` (None if absent)."""
    names = [override] if override else [f"{stem}.pb", f"{stem}.pbtxt"]
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _missing(folder, wanted):
    held = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return ModelNotFoundError(
        f"model folder '{folder}' lacks {', '.join(wanted)} (it holds: {', '.join(held) or 'nothing'}). nbcaffe does"
        f" not download models: copy a Caffe2 model-zoo folder (init_net.pb, predict_net.pb, value_info.json) there,"
        f" or write one with nbcaffe.models.download.write_model")


@dataclasses.dataclass
class ZooModel:
    """A loaded model folder: the two NetDefs, the input description and where it came from."""

    init_net: caffe2_pb2.NetDef
    predict_net: caffe2_pb2.NetDef
    value_info: dict
    folder: str

    def inputs(self) -> dict:
        """{input blob: (NumPy dtype, shape)} from value_info.json."""
        return {name: (utils.dtype_of(int(kind)), tuple(shape)) for name, (kind, shape) in self.value_info.items()}

    def predictor(self, device=None, **kwargs):
        """A :class:`nbcaffe.Predictor` for this model (its own workspace)."""
        from nbcaffe.predictor import Predictor

        return Predictor(self.init_net, self.predict_net, device, **kwargs)

    def dummy_input(self, batch_size=None) -> dict:
        """{input blob: zeros} of the value_info shape (batch dimension replaced if given)."""
        feeds = {}
        for name, (dtype, shape) in self.inputs().items():
            if batch_size is not None and shape:
                shape = (batch_size,) + tuple(shape[1:])
            feeds[name] = np.zeros(shape, dtype=dtype)
        return feeds


def load_model(folder, init_net=None, predict_net=None, value_info="value_info.json", name=None) -> ZooModel:
    """Read a model folder.  ``init_net``/``predict_net`` name other files in it (default: the
    ``.pb``, else the ``.pbtxt`` form); ``value_info=None`` makes value_info.json optional."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ModelNotFoundError(
            f"model folder '{folder}' does not exist. nbcaffe does not download models: put the Caffe2 model-zoo"
            f" files ({', '.join(FILES)}) in that folder, or point CAFFE2_MODELS at the folder that holds it")
    init_path = _find(folder, "init_net", init_net)
    predict_path = _find(folder, "predict_net", predict_net)
    info_path = os.path.join(folder, value_info) if value_info else None
    wanted = [label for label, path in ((init_net or "init_net.pb", init_path),
                                        (predict_net or "predict_net.pb", predict_path)) if path is None]
    if info_path is not None and not os.path.isfile(info_path):
        wanted.append(value_info)
    if wanted:
        raise _missing(folder, wanted)
    init, predict = utils.read_net(init_path), utils.read_net(predict_path)
    info = {}
    if info_path is not None:
        try:
            with open(info_path) as handle:
                info = json.load(handle)
        except json.JSONDecodeError as exc:
            raise errors.ProtoError(f"{info_path}: not valid JSON ({exc})") from None
    if name is not None:  # Caffe2's get_c2_model names the nets after the model
        predict.name, init.name = name, f"{name}_init"
    return ZooModel(init, predict, info, folder)


class ModelDownloader:
    """Caffe2's loader API over local folders: ``get_c2_model(name)`` → (init_net, predict_net,
    value_info) from ``models_dir()/name``; raises ModelNotFoundError instead of downloading."""

    def __init__(self, model_env_name="CAFFE2_MODELS"):
        self.model_env_name = model_env_name

    def _model_dir(self, model):
        return os.path.join(models_dir(self.model_env_name), model)

    def get_c2_model(self, model_name):
        model = load_model(self._model_dir(model_name), name=model_name)
        return model.init_net, model.predict_net, model.value_info


def _write_atomically(path, data: bytes):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_model(folder, init_net, predict_net, value_info=None, text=False):
    """Write a model folder (each file replaced atomically): the nets in binary (``.pb``) or text
    (``text=True``, ``.pbtxt``) form and ``value_info`` ({blob: [data type, shape]} or
    {blob: array} to describe by example) as value_info.json.  Returns the paths written."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = []
    for stem, net in (("init_net", init_net), ("predict_net", predict_net)):
        proto = net.Proto() if hasattr(net, "Proto") else net
        path = os.path.join(folder, f"{stem}.pbtxt" if text else f"{stem}.pb")
        _write_atomically(path, str(proto).encode() if text else proto.SerializeToString())
        written.append(path)
    if value_info is not None:
        info = {name: ([utils.data_type_of(v.dtype), list(v.shape)] if isinstance(v, np.ndarray) else list(v))
                for name, v in value_info.items()}
        path = os.path.join(folder, "value_info.json")
        _write_atomically(path, json.dumps(info).encode())
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check a local Caffe2 model-zoo folder (nbcaffe never downloads).")
    parser.add_argument("model", nargs="+", help="model name (under --dir) or a folder path")
    parser.add_argument("--dir", default=None, help="folder holding named models (default: $CAFFE2_MODELS)")
    args = parser.parse_args(argv)
    status = 0
    for model in args.model:
        folder = model if os.path.isdir(model) else os.path.join(args.dir or models_dir(), model)
        try:
            loaded = load_model(folder)
        except errors.NbcaffeError as exc:
            print(f"{model}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{model}: {folder}: {len(loaded.init_net.op)} init ops, {len(loaded.predict_net.op)} predict ops,"
              f" inputs {loaded.inputs()}, outputs {list(loaded.predict_net.external_output)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
