"""Operator families.  Importing this package registers every CPU operator; the CUDA
kernels register from nbcaffe/cuda/ when a CUDA DeviceOption is first used.

Every module here that does not start with ``_`` is an operator family and is imported
(registered) in name order.  Discovery instead of a hand-kept list means a new family cannot
be forgotten, and engineers adding families in parallel never edit the same line;
tests/test_registry.py checks that nbcaffe/cuda/ mirrors the same family names.
"""

import importlib
import pkgutil

FAMILIES = tuple(sorted(name for _finder, name, _pkg in pkgutil.iter_modules(__path__) if not name.startswith("_")))

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
del _family
