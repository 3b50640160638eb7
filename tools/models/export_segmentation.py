#!/usr/bin/env python3
"""Export a segmentation model to ONNX for ServeSharp (and optionally archive it as a .mar).

    /usr/bin/python3 tools/models/export_segmentation.py --arch deeplabv3plus_mobilenet_v3_large --out model.onnx
        [--num-classes 21] [--output-stride 16|8] [--seed 0] [--weights official_or_saved.pth] [--aux]
        [--argmax] [--fit-steps N] [--save-state model.pt] [--mar EXPORT_DIR --model-name NAME --mode torchserve]

The ONNX graph has input "input" (float N×3×H×W, dynamic N/H/W) and output "out" (logits N×C×H×W at the input's
resolution; with --argmax an int64 N×H×W class map instead), plus "aux" with --aux. Weights are a seeded random
init, or --weights: an official torchvision checkpoint (loaded unchanged, strict) or one saved with --save-state.

--fit-steps trains the model briefly on python3-skimage's photographs toward a smooth colour-derived target and then
re-estimates BatchNorm statistics: a random DeepLab is chaotic (tiny input changes flip its argmax), which makes
parity measurements meaningless; a fitted one is stable and still sensitive to real preprocessing differences.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import segmentation_models as sm  # noqa: E402

torch.set_num_threads(2)


class Exported(nn.Module):
    def __init__(self, model: nn.Module, aux: bool, argmax: bool):
        super().__init__()
        self.model, self.aux, self.argmax = model, aux, argmax

    def forward(self, x):
        result = self.model(x)
        out = result["out"].argmax(dim=1) if self.argmax else result["out"]
        return (out, result["aux"]) if self.aux else out


def export(model: nn.Module, path: str, aux: bool, argmax: bool, opset: int = 13) -> None:
    model.eval()
    wrapper = Exported(model, aux, argmax).eval()
    names = ["out", "aux"] if aux else ["out"]
    axes = {"input": {0: "N", 2: "H", 3: "W"}, "out": {0: "N", 2: "H", 3: "W"} if not argmax else {0: "N", 1: "H", 2: "W"}}
    if aux:
        axes["aux"] = {0: "N", 2: "H", 3: "W"}
    with torch.no_grad():
        torch.onnx.export(wrapper, torch.randn(1, 3, 224, 224), path, input_names=["input"], output_names=names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", required=True, choices=sm.ARCHITECTURES)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--output-stride", type=int, default=16, choices=[8, 16])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="state dict to load (official torchvision checkpoints load unchanged)")
    p.add_argument("--aux", action="store_true", help="also export the auxiliary head's output as 'aux'")
    p.add_argument("--argmax", action="store_true", help="end the graph in argmax (int64 class map)")
    p.add_argument("--fit-steps", type=int, default=0, help="train this many steps on sample photographs first")
    p.add_argument("--save-state", help="write the weights (and architecture) to this .pt file")
    p.add_argument("--mar", help="also write NAME.mar into this folder with servesharp-archiver")
    p.add_argument("--model-name", default="deeplab")
    p.add_argument("--mode", default="torchserve", help="the handler's preprocessing mode in model-config.yaml")
    p.add_argument("--output", default=None, help="the handler's default output in model-config.yaml")
    p.add_argument("--names", help="index_to_name.json to ship (default: VOC's 21 names, or class_<i>)")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    aux = args.aux or (args.weights is not None and sm.checkpoint_has_aux(args.weights))
    model = sm.build(args.arch, args.num_classes, args.output_stride, aux=aux)
    if args.weights:
        sm.load_weights(model, args.weights)
    if args.fit_steps > 0:
        import fit
        fit.fit(model, args.num_classes, args.fit_steps, args.seed)
    model.eval()
    if args.save_state:
        torch.save({"arch": args.arch, "num_classes": args.num_classes, "output_stride": args.output_stride,
                    "aux": aux, "state_dict": model.state_dict()}, args.save_state)
    export(model, args.out, aux=args.aux, argmax=args.argmax)
    print(args.out)

    if args.mar:
        write_mar(args)


def write_mar(args) -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        names_path = args.names
        if names_path is None:
            names_path = os.path.join(tmp, "index_to_name.json")
            names = sm.VOC_CLASSES if args.num_classes == 21 else [f"class_{i}" for i in range(args.num_classes)]
            with open(names_path, "w") as f:
                json.dump({str(i): n for i, n in enumerate(names)}, f, indent=2)
        config = os.path.join(tmp, "model-config.yaml")
        with open(config, "w") as f:
            f.write("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 50\nresponseTimeout: 300\n")
            f.write(f"handler:\n  mode: {args.mode}\n")
            if args.output:
                f.write(f"  output: {args.output}\n")
        subprocess.run([os.path.join(root, "servesharp-archiver"), "--model-name", args.model_name, "--serialized-file", args.out,
                        "--handler", "image_segmenter", "--extra-files", names_path, "--config-file", config,
                        "--export-path", args.mar, "-f"], check=True)


if __name__ == "__main__":
    main()
