#!/usr/bin/env python3
"""Measures a served segmentation model: mIoU and pixel accuracy over a folder of images and label PNGs.

    /usr/bin/python3 tools/demo/evaluate.py DATA_DIR [--url http://127.0.0.1:8080] [--model deeplab]
        [--key-file key_file.json | --token KEY] [--classes 6] [--json]

DATA_DIR holds images/NAME.png and labels/NAME.png (8-bit class indices; 255 is ignored), as tools/demo/scenes.py
writes them. Each image is sent to POST /predictions/MODEL?output=mask — the server's own answer, so this measures
what users get — and the returned class-index PNG is compared with the label.
"""
import argparse
import io
import json
import os
import sys
import urllib.request

import numpy as np
from PIL import Image


def predict(url, model, token, data):
    request = urllib.request.Request(f"{url}/predictions/{model}?output=mask", data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=300) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", default="deeplab")
    p.add_argument("--key-file", default="key_file.json")
    p.add_argument("--token")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args()

    token = args.token
    if token is None and os.path.exists(args.key_file):
        with open(args.key_file) as f:
            token = json.load(f)["inference"]["key"]

    n = args.classes
    confusion = np.zeros((n, n), dtype=np.int64)
    names = sorted(os.listdir(os.path.join(args.data, "images")))
    for name in names:
        with open(os.path.join(args.data, "images", name), "rb") as f:
            predicted = predict(args.url, args.model, token, f.read()).astype(np.int64)
        label = np.asarray(Image.open(os.path.join(args.data, "labels", os.path.splitext(name)[0] + ".png"))).astype(np.int64)
        if predicted.shape != label.shape:
            sys.exit(f"{name}: the server answered {predicted.shape}, the label is {label.shape}")
        keep = (label < n) & (predicted < n)
        confusion += np.bincount(label[keep] * n + predicted[keep], minlength=n * n).reshape(n, n)

    inter = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    result = {"images": len(names), "mIoU": float(np.nanmean(iou)), "pixel_accuracy": float(inter.sum() / max(confusion.sum(), 1)),
              "per_class_iou": [None if np.isnan(v) else float(v) for v in iou]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images']} images: mIoU {result['mIoU']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}")
        print("per-class IoU: " + ", ".join(f"{i}: {v:.4f}" for i, v in enumerate(iou)))


if __name__ == "__main__":
    main()
