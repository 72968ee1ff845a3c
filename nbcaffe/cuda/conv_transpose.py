"""CUDA launchers of nbcaffe/ops/conv_transpose.py: the direct kernels of nbcaffe/cuda/conv.py
with the roles of the convolution's input and output swapped (ConvTranspose's forward pass is
the input-gradient kernel, its input gradient the forward kernel)."""

from __future__ import annotations

from nbcaffe.cuda.conv import launch_backward_data, launch_backward_filter, launch_bias_grad, launch_forward
from nbcaffe.devices import CUDA
from nbcaffe.ops._conv_cpu import PLAN_HEAD
from nbcaffe.registry import register_kernel


@register_kernel("ConvTranspose", CUDA)
def conv_transpose_launch(x, w, b, y, plans, scratch):
    """Launcher with conv_transpose_cpu's signature: y = the input-gradient kernel applied to x."""
    plan, _, has_bias = plans
    launch_backward_data(x, w, y, has_bias, b, plan[0], plan[1], plan[PLAN_HEAD:])


@register_kernel("ConvTransposeGradient", CUDA)
def conv_transpose_gradient_launch(x, w, dy, dw, db, dx, plans, scratch):
    """Launcher with conv_transpose_gradient_cpu's signature."""
    plan = plans[0]
    nchw, group, p = plan[0], plan[1], plan[PLAN_HEAD:]
    launch_bias_grad(dy, db, nchw)
    launch_backward_filter(dy, x, dw, nchw, group, p)
    launch_forward(dy, w, db, dx, False, nchw, group, p)  # db: any 1-D array; no bias is added
