"""Conventions shared by the zoo builders."""

from __future__ import annotations


def no_data_grad(data_grad: bool) -> dict:
    """Arguments for a model's first convolution: without ``data_grad`` it gets Caffe2's
    ``no_gradient_to_input=1``, so the backward pass computes no gradient for the image batch.
    That gradient is dead work in training (PyTorch skips it for inputs without
    ``requires_grad``; Caffe2's tutorials stopped it with StopGradient after paying for it):
    for LeNet it is a third of conv1's backward time.  Pass ``data_grad=True`` when the
    input gradient is wanted (saliency maps, adversarial examples, a zoo net inside a larger
    net)."""
    return {} if data_grad else {"no_gradient_to_input": 1}
