"""Operator test harness (Caffe2's hypothesis_test_util, redone): strategies, reference,
device and gradient checks, and the OpTestCase base class."""

from nbcaffe.testing import strategies  # noqa: F401
from nbcaffe.testing.gradient_check import directional_check  # noqa: F401
from nbcaffe.testing.op_test import (  # noqa: F401
    OpTestCase,
    check_devices,
    check_gradient,
    check_reference,
    device_options,
    run_op,
)
