#!/usr/bin/env python3
"""JPEG photographs for the benchmark (python3-skimage's samples, four sizes) and one large image (2400×1600).

    /usr/bin/python3 tools/bench/photos.py OUT_DIR
"""
import os
import sys

from PIL import Image
from skimage import data

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name in ["astronaut", "chelsea", "coffee", "rocket"]:
    Image.fromarray(getattr(data, name)()).convert("RGB").save(os.path.join(out, f"{name}.jpg"), quality=90)
Image.fromarray(data.rocket()).convert("RGB").resize((2400, 1600), Image.BICUBIC).save(os.path.join(out, "large.jpg"), quality=90)
