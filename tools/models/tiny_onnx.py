#!/usr/bin/env python3
"""Write a tiny ONNX "segmentation" model for tests: a 1x1 convolution from 3 channels to C classes.

out[n, c, y, x] = sum_k W[c, k] * input[n, k, y, x] + b[c], with W = identity rows for the first three
classes and -1 for the rest, so a test can compute every logit by hand. Dynamic batch, height and width.

    /usr/bin/python3 tools/models/tiny_onnx.py OUT.onnx [--classes 4] [--argmax]

--argmax appends ArgMax over the class axis (int64 N x H x W), like models exported with a final argmax.
--flat writes a model that does not fit image_segmenter (input N x 3, output N x C) for load-failure tests.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def flat(classes: int) -> onnx.ModelProto:
    w = np.ones((3, classes), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["out"])], "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def build(classes: int, argmax: bool) -> onnx.ModelProto:
    w = np.zeros((classes, 3, 1, 1), dtype=np.float32)
    for c in range(classes):
        if c < 3:
            w[c, c, 0, 0] = 1.0
        else:
            w[c, :, 0, 0] = -1.0
    b = np.zeros((classes,), dtype=np.float32)
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["logits" if argmax else "out"], kernel_shape=[1, 1])]
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["out"], axis=1, keepdims=0))
        output = helper.make_tensor_value_info("out", TensorProto.INT64, ["N", "H", "W"])
    else:
        output = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", classes, "H", "W"])
    graph = helper.make_graph(
        nodes,
        "tiny_segmenter",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [output],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--argmax", action="store_true")
    parser.add_argument("--flat", action="store_true")
    args = parser.parse_args()
    onnx.save(flat(args.classes) if args.flat else build(args.classes, args.argmax), args.output)


if __name__ == "__main__":
    main()
