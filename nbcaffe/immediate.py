"""Immediate mode (Caffe2's ``workspace.StartImmediate``): build a net and watch it run.

While immediate mode is on, every operator created through ``core.CreateOperator`` — which
includes every ``net.X(...)``, brew helper and ModelHelper call — also runs at once in a
private workspace, so each blob can be inspected (``FetchImmediate``) right after the line
that makes it.  The ops still go into the nets being built, which run normally later; the
private workspace never touches the current one.  Feed external inputs with
``FeedImmediate`` before creating the ops that read them.  Gradient ops made by
``AddGradientOperators`` are built as protos by autograd, not through CreateOperator, so
they do not run immediately (as in Caffe2).

The functions are re-exported by ``nbcaffe.workspace`` under Caffe2's names.
"""

from __future__ import annotations

import shutil
import tempfile

from nbcaffe import errors, workspace

IMMEDIATE_WORKSPACE = "_CAFFE2_IMMEDIATE"  # Caffe2's name for the private workspace
_state = {"on": False, "root": ""}

_NOTE = """Immediate mode is on: every operator you create also runs at once in a private
workspace ('{name}').  Feed its inputs with workspace.FeedImmediate before creating the ops that
read them, inspect results with workspace.FetchImmediate / ImmediateBlobs, and call
workspace.StopImmediate() when done.  An op that cannot run (a missing input, a bad shape)
raises where you create it.  Gradient ops from AddGradientOperators do not run immediately.
(StartImmediate(i_know=True) skips this note.)"""


def IsImmediate() -> bool:
    """Whether immediate mode is on."""
    return _state["on"]


def StartImmediate(i_know=False):
    """Turn immediate mode on with a fresh private workspace (restarting it if already on)."""
    if IsImmediate():
        StopImmediate()
    _state["on"] = True
    _state["root"] = tempfile.mkdtemp(prefix="nbcaffe_immediate_")
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        workspace.ResetWorkspace(_state["root"])
    if not i_know:
        print(_NOTE.format(name=IMMEDIATE_WORKSPACE))
    return True


def StopImmediate():
    """Turn immediate mode off and free the private workspace and its folder."""
    if not IsImmediate():
        return True
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        workspace.ResetWorkspace()
    if workspace.CurrentWorkspace() != IMMEDIATE_WORKSPACE:
        workspace._workspaces.pop(IMMEDIATE_WORKSPACE, None)
    shutil.rmtree(_state["root"], ignore_errors=True)
    _state["on"] = False
    _state["root"] = ""
    return True


def _require(what):
    if not IsImmediate():
        raise errors.NbcaffeError(f"{what}: immediate mode is off; call workspace.StartImmediate() first")


def ImmediateBlobs() -> list:
    """Names of the blobs in the immediate workspace."""
    _require("ImmediateBlobs")
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        return workspace.Blobs()


def RunOperatorImmediate(op):
    """Run one OperatorDef in the immediate workspace (called by core.CreateOperator)."""
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        return workspace.RunOperatorOnce(op)


def FetchImmediate(*args, **kwargs):
    """FetchBlob from the immediate workspace."""
    _require("FetchImmediate")
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        return workspace.FetchBlob(*args, **kwargs)


def FeedImmediate(*args, **kwargs):
    """FeedBlob into the immediate workspace."""
    _require("FeedImmediate")
    with workspace.WorkspaceGuard(IMMEDIATE_WORKSPACE):
        return workspace.FeedBlob(*args, **kwargs)
