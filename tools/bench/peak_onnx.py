#!/usr/bin/env python3
"""Writes the ONNX models of the benchmark's machine-peak measurement into OUT_DIR:

    matmul.onnx   one MatMul, A[M×K] · B[K×N]
    conv3x3.onnx  eight 3×3 convolutions, 256 → 256 channels, padding 1 (ResNet's and the ASPP's shape)
    conv1x1.onnx  eight 1×1 convolutions, 1024 → 256 → 1024 … (the bottleneck blocks' shape)

A chain of convolutions keeps ONNX Runtime's layout reorders at the ends, so the figure is the kernels' own.

    /usr/bin/python3 tools/bench/peak_onnx.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(nodes, inputs, initializers, path):
    graph = helper.make_graph(nodes, os.path.basename(path), inputs, [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def conv_chain(path, channels, kernel):
    rng = np.random.RandomState(0)
    nodes, weights, x = [], [], "X"
    for i in range(8):
        cin, cout = channels[i % len(channels)], channels[(i + 1) % len(channels)]
        w = numpy_helper.from_array((rng.randn(cout, cin, kernel, kernel) / np.sqrt(cin * kernel * kernel)).astype(np.float32), f"W{i}")
        weights.append(w)
        pad = kernel // 2
        nodes.append(helper.make_node("Conv", [x, w.name], [f"Y{i}"], pads=[pad] * 4))
        x = f"Y{i}"
    save(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels[0], "H", "W"])], weights, path)


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
save([helper.make_node("MatMul", ["A", "B"], ["C"])],
     [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", "K"]), helper.make_tensor_value_info("B", TensorProto.FLOAT, ["K", "N"])],
     [], os.path.join(out, "matmul.onnx"))
conv_chain(os.path.join(out, "conv3x3.onnx"), [256], 3)
conv_chain(os.path.join(out, "conv1x1.onnx"), [1024, 256], 1)
