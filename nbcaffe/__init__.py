"""nbcaffe: Caffe2's programming model in pure Python, with Numba kernels on CPU and CUDA.

``from nbcaffe import workspace, core, cnn, model_helper, brew`` gives the Caffe2 modules of
the same names.  Importing nbcaffe registers the CPU operators; it never imports
``numba.cuda`` (CUDA support loads the first time an op runs under a CUDA DeviceOption).
"""

__version__ = "0.1.0"

# importing nbcaffe.ops registers the CPU operators
from nbcaffe import core, ops, workspace  # noqa: E402,F401
from nbcaffe.predictor import Predictor  # noqa: E402,F401
from nbcaffe.proto import caffe2_pb2  # noqa: E402,F401
from nbcaffe.threads import get_num_threads, set_num_threads  # noqa: E402,F401
