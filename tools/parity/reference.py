#!/usr/bin/env python3
"""Reference segmentations computed with PyTorch/torchvision, for ServeSharp's parity tests.

    /usr/bin/python3 tools/parity/reference.py --state model.pt --mode torchserve|torchvision|original --out DIR
        [--resize-size 520] [--scales 0.75,1.0,1.25] [--flip] [--crop-size H W] [--stride H W] IMAGE...

For each image writes STEM.classes (uint8), STEM.probs (float32, little-endian) and STEM.json ({"width", "height"}):
the argmax class and its softmax probability per pixel, computed the straightforward torch way:
- torchserve: TorchServe's image_segmenter — Resize(256), CenterCrop(224), ToTensor, Normalize; softmax; max (224×224);
- torchvision: the segmentation weights' eval preset — Resize(resize_size), ToTensor, Normalize; logits upsampled
  (bilinear) to the image size; softmax; max;
- original: no resize.
--scales/--flip: mmsegmentation's TTA — for each scale (and its flip) the input is resized (bilinear), the logits are
resized back to the base size, soft-maxed and averaged; the average is upsampled to the image size before the max.
--crop-size/--stride: mmsegmentation's slide inference on the base image (logits summed and divided by the count).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import segmentation_models as sm  # noqa: E402

torch.set_num_threads(2)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def load(state_path):
    state = torch.load(state_path, map_location="cpu")
    model = sm.build(state["arch"], state["num_classes"], state["output_stride"], aux=state["aux"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def logits(model, x):
    return model(x)["out"]


def slide(model, x, crop, stride):
    (hc, wc), (hs, ws) = crop, stride
    _, _, h, w = x.shape
    rows = max(h - hc + hs - 1, 0) // hs + 1
    cols = max(w - wc + ws - 1, 0) // ws + 1
    preds, count = None, torch.zeros(1, 1, h, w)
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * hs + hc, h), min(c * ws + wc, w)
            y1, x1 = max(y2 - hc, 0), max(x2 - wc, 0)
            out = logits(model, x[:, :, y1:y2, x1:x2])
            if preds is None:
                preds = torch.zeros(1, out.shape[1], h, w)
            preds[:, :, y1:y2, x1:x2] += out
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def tta_probs(model, x, scales, flip):
    _, _, h, w = x.shape
    total, n = None, 0
    for s in scales:
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for flipped in ([False, True] if flip else [False]):
            out = logits(model, xs.flip(-1) if flipped else xs)
            if flipped:
                out = out.flip(-1)
            if out.shape[-2:] != (h, w):
                out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            p = out.softmax(dim=1)
            total = p if total is None else total + p
            n += 1
    return total / n


@torch.no_grad()
def segment(model, path, args):
    img = Image.open(path).convert("RGB")
    width, height = img.size
    normalize = [T.ToTensor(), T.Normalize(MEAN, STD)]
    if args.mode == "torchserve":
        x = T.Compose([T.Resize(256), T.CenterCrop(224)] + normalize)(img)[None]
        probs = logits(model, x).softmax(dim=1)
        return probs.max(dim=1)
    pre = [T.Resize(args.resize_size)] if args.mode == "torchvision" else []
    x = T.Compose(pre + normalize)(img)[None]
    if args.crop_size:
        probs = slide(model, x, args.crop_size, args.stride or args.crop_size).softmax(dim=1)
        return probs.max(dim=1)
    if args.scales or args.flip:
        probs = tta_probs(model, x, args.scales or [1.0], args.flip)
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
        return probs.max(dim=1)
    out = logits(model, x)
    out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
    return out.softmax(dim=1).max(dim=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True)
    p.add_argument("--mode", default="torchserve", choices=["torchserve", "torchvision", "original"])
    p.add_argument("--resize-size", type=int, default=520)
    p.add_argument("--scales", type=lambda s: [float(v) for v in s.split(",")])
    p.add_argument("--flip", action="store_true")
    p.add_argument("--crop-size", type=int, nargs=2)
    p.add_argument("--stride", type=int, nargs=2)
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = load(args.state)
    for path in args.images:
        values, indices = segment(model, path, args)
        stem = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
        indices[0].numpy().astype(np.uint8).tofile(stem + ".classes")
        values[0].numpy().astype("<f4").tofile(stem + ".probs")
        with open(stem + ".json", "w") as f:
            json.dump({"width": int(values.shape[2]), "height": int(values.shape[1])}, f)


if __name__ == "__main__":
    main()
