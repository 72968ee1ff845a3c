"""Exception types.  All derive from RuntimeError, as Caffe2's enforce failures did, so
code written against Caffe2 (``except RuntimeError``) keeps working."""

from __future__ import annotations

import difflib


class NbcaffeError(RuntimeError):
    """Base class of every nbcaffe error."""


class SchemaError(NbcaffeError):
    """An OperatorDef does not fit its op's schema (arity, in-place rules, arguments)."""


class ArgumentError(SchemaError):
    """An operator argument is unknown, missing or of the wrong type."""


class UnsupportedOperatorError(NbcaffeError):
    """No schema, or no kernel for the requested device."""


class BlobNotFoundError(NbcaffeError):
    """A blob that an op or a Fetch needs is not in the workspace."""


class DeviceMismatchError(NbcaffeError):
    """A blob lives on a different device than the op that reads it expects."""


class ShapeError(NbcaffeError, ValueError):
    """Input shapes or dtypes an op cannot accept."""


class OperatorError(NbcaffeError):
    """An op failed while running; the message names the op, its blobs and where it was built."""


class NonFiniteError(OperatorError):
    """A tensor holds NaN or Inf where a check (NanCheck, debugging.check_finite) wants none."""


class AssertionFailedError(OperatorError):
    """An Assert op found a false (zero) value."""


class PythonOperatorError(OperatorError):
    """The Python function of a Python/PythonGradient op raised; the original exception is chained."""


class ProtoError(NbcaffeError, ValueError):
    """Bytes or text that do not parse as the expected protobuf message."""


class RegistryError(NbcaffeError):
    """Inconsistent operator registration (a programming error inside nbcaffe or an extension)."""


def close_matches(name: str, candidates, n: int = 5, cutoff: float = 0.6) -> list[str]:
    """Names from `candidates` that look like `name` (for "did you mean" hints)."""
    candidates = list(candidates)
    hits = difflib.get_close_matches(name, candidates, n=n, cutoff=cutoff)
    lower = name.lower()
    for c in candidates:  # case-only differences are the most common typo (RELU, relu)
        if c.lower() == lower and c not in hits:
            hits.insert(0, c)
    return hits[:n]


def did_you_mean(name: str, candidates) -> str:
    """' Did you mean: a, b?' or '' when nothing is close."""
    hits = close_matches(name, candidates)
    return f" Did you mean: {', '.join(hits)}?" if hits else ""
