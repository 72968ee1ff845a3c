"""Parameter creation support (Caffe2's ``caffe2.python.modeling``)."""
