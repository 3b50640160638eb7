#!/usr/bin/env python3
"""Writes python3-skimage's sample photographs as PNG (and one JPEG) for tests: real images, not noise.

    /usr/bin/python3 tools/parity/photographs.py OUT_DIR
"""
import os
import sys

from PIL import Image
from skimage import data

NAMES = ["astronaut", "chelsea", "coffee", "rocket"]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in NAMES:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(os.path.join(out, f"{name}.png"))
    Image.fromarray(data.chelsea()).save(os.path.join(out, "chelsea.jpg"), quality=92)


if __name__ == "__main__":
    main()
