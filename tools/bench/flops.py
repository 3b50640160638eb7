#!/usr/bin/env python3
"""Counts a segmentation model's floating-point operations for one input size (2 per multiply-add, convolutions and
linear layers; what dominates a DeepLab), for the benchmark's compute-rate figure.

    /usr/bin/python3 tools/bench/flops.py --state model.pt --height 520 --width 693     → prints GFLOP
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import load  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    args = p.parse_args()
    model = load(args.state)
    total = [0]

    def conv(m, inputs, output):
        kh, kw = m.kernel_size
        total[0] += 2 * output.numel() * (m.in_channels // m.groups) * kh * kw

    def linear(m, inputs, output):
        total[0] += 2 * output.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear)
    with torch.no_grad():
        model(torch.zeros(1, 3, args.height, args.width))
    print(f"{total[0] / 1e9:.3f}")


if __name__ == "__main__":
    main()
