#!/usr/bin/env python3
"""Writes a one-node MatMul ONNX model (A[N×N] · B[N×N]) for the benchmark's machine-peak measurement.

    /usr/bin/python3 tools/bench/matmul_onnx.py OUT.onnx
"""
import sys

import onnx
from onnx import TensorProto, helper

graph = helper.make_graph(
    [helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul",
    [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", "K"]), helper.make_tensor_value_info("B", TensorProto.FLOAT, ["K", "N"])],
    [helper.make_tensor_value_info("C", TensorProto.FLOAT, ["M", "N"])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, sys.argv[1])
