"""The "Caffe2 Concepts" intro, verbatim except for the import line.

Run:  python examples/intro.py
(notebooks/01_intro.ipynb has the same code, a NumPy check of the numbers and the CUDA run.)
"""

import numpy as np

from nbcaffe import cnn, workspace  # was: from caffe2.python import workspace, cnn

# Create the input data
data = np.random.rand(16, 100).astype(np.float32)

# Create labels for the data as integers [0, 9].
label = (np.random.rand(16) * 10).astype(np.int32)

workspace.FeedBlob("data", data)
workspace.FeedBlob("label", label)

# Create model using a model helper
m = cnn.CNNModelHelper(name="my first net")
fc_1 = m.FC("data", "fc1", dim_in=100, dim_out=10)
pred = m.Sigmoid(fc_1, "pred")
[softmax, loss] = m.SoftmaxWithLoss([pred, "label"], ["softmax", "loss"])

print(str(m.net.Proto()))

workspace.RunNetOnce(m.param_init_net)
workspace.CreateNet(m.net)

# Run 100 x 10 iterations
for j in range(0, 100):  # noqa: B007  (the tutorial's own loop)
    data = np.random.rand(16, 100).astype(np.float32)
    label = (np.random.rand(16) * 10).astype(np.int32)

    workspace.FeedBlob("data", data)
    workspace.FeedBlob("label", label)

    workspace.RunNet(m.name, 10)   # run for 10 times

print(workspace.FetchBlob("softmax"))
print(workspace.FetchBlob("loss"))
