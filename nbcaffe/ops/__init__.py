"""Operator families.  Importing this package registers every CPU operator; the CUDA
kernels register from nbcaffe/cuda/ when a CUDA DeviceOption is first used."""

from nbcaffe.ops import activation, arithmetic, fc, fill, loss, persistence, reduction, tensor, training  # noqa: F401

FAMILIES = ("activation", "arithmetic", "fc", "fill", "loss", "persistence", "reduction", "tensor", "training")
