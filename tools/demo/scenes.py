#!/usr/bin/env python3
"""Procedural street scenes with pixel-exact labels, for training and evaluating ServeSharp's demo model.

    /usr/bin/python3 tools/demo/scenes.py OUT_DIR --count 200 --seed 1000 [--width 320 --height 240]

Writes OUT_DIR/images/NNNNN.png and OUT_DIR/labels/NNNNN.png (8-bit class indices). Classes:
0 sky, 1 road, 2 building, 3 vegetation, 4 vehicle, 5 person. Scenes vary the horizon, sky colour and clouds,
building heights, colours and window grids, trees and bushes, road perspective and lane marks, cars and people at
perspective-dependent scales and in depth order (so nearer objects occlude farther ones), plus global lighting,
colour cast, blur and sensor noise. Everything is drawn from one seeded numpy Generator: same seed, same scenes.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["sky", "road", "building", "vegetation", "vehicle", "person"]
PALETTE = [(70, 130, 180), (128, 64, 128), (70, 70, 70), (107, 142, 35), (0, 0, 142), (220, 20, 60)]
SKY, ROAD, BUILDING, VEGETATION, VEHICLE, PERSON = range(6)


def jitter(rng, colour, amount):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


class Canvas:
    """An RGB image and its label map, drawn together so that labels are exact."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        self.rgb = Image.new("RGB", (w, h))
        self.lab = Image.new("L", (w, h))
        self.d_rgb, self.d_lab = ImageDraw.Draw(self.rgb), ImageDraw.Draw(self.lab)

    def polygon(self, pts, colour, cls):
        self.d_rgb.polygon(pts, fill=colour)
        self.d_lab.polygon(pts, fill=cls)

    def rect(self, box, colour, cls):
        self.d_rgb.rectangle(box, fill=colour)
        self.d_lab.rectangle(box, fill=cls)

    def ellipse(self, box, colour, cls):
        self.d_rgb.ellipse(box, fill=colour)
        self.d_lab.ellipse(box, fill=cls)

    def paint(self, box, colour):
        """Colour only (texture on an object whose label is already drawn)."""
        self.d_rgb.rectangle(box, fill=colour)


def sky(c, rng, horizon):
    top = np.array(jitter(rng, rng.choice([(90, 140, 210), (150, 170, 190), (200, 150, 120), (60, 90, 160)]), 25), float)
    bottom = np.array(jitter(rng, (200, 210, 225), 25), float)
    t = np.linspace(0, 1, max(horizon, 1))[:, None]
    grad = (top * (1 - t) + bottom * t).astype(np.uint8)
    strip = np.repeat(grad[:, None, :], c.w, axis=1)
    c.rgb.paste(Image.fromarray(strip), (0, 0))
    c.d_lab.rectangle((0, 0, c.w, horizon), fill=SKY)
    for _ in range(rng.integers(0, 5)):
        x, y = rng.integers(0, c.w), rng.integers(0, max(1, horizon // 2))
        rw, rh = rng.integers(20, 70), rng.integers(6, 18)
        c.d_rgb.ellipse((x - rw, y - rh, x + rw, y + rh), fill=jitter(rng, (235, 235, 240), 12))


def ground(c, rng, horizon):
    grass = jitter(rng, (90, 130, 50), 25)
    c.rect((0, horizon, c.w, c.h), grass, VEGETATION)
    vx = c.w * rng.uniform(0.3, 0.7)
    left, right = -c.w * rng.uniform(0.1, 0.6), c.w * (1 + rng.uniform(0.1, 0.6))
    half = rng.uniform(4, 20)
    c.polygon([(vx - half, horizon), (vx + half, horizon), (right, c.h), (left, c.h)], jitter(rng, (105, 105, 110), 20), ROAD)
    # Pavement beside the road counts as road (drivable/walkable ground).
    walk = rng.uniform(0.08, 0.25) * c.w
    c.polygon([(vx - half - 3, horizon), (vx - half, horizon), (left, c.h), (left - walk, c.h)], jitter(rng, (160, 155, 150), 15), ROAD)
    c.polygon([(vx + half, horizon), (vx + half + 3, horizon), (right + walk, c.h), (right, c.h)], jitter(rng, (160, 155, 150), 15), ROAD)
    for k in range(8):  # dashed centre line, painted on the road
        t0, t1 = k / 8 + 0.02, k / 8 + 0.06
        y0, y1 = horizon + (c.h - horizon) * t0 ** 1.5, horizon + (c.h - horizon) * t1 ** 1.5
        wd = 1 + 3 * t1
        c.d_rgb.polygon([(vx - wd, y0), (vx + wd, y0), (vx + wd, y1), (vx - wd, y1)], fill=(230, 230, 220))
    return vx, left, right


def buildings(c, rng, horizon):
    x = -rng.integers(0, 30)
    while x < c.w:
        bw = int(rng.integers(30, 90))
        top = int(horizon - rng.uniform(0.15, 0.85) * horizon)
        colour = jitter(rng, rng.choice([(150, 80, 60), (170, 170, 165), (200, 190, 160), (110, 110, 120), (180, 140, 110)]), 20)
        base = horizon + int(rng.integers(2, 8))
        c.rect((x, top, x + bw, base), colour, BUILDING)
        win = jitter(rng, rng.choice([(40, 50, 70), (200, 210, 230), (230, 200, 120)]), 15)
        ws, gap = int(rng.integers(4, 8)), int(rng.integers(4, 8))
        for wy in range(top + gap, base - ws - 2, ws + gap):
            for wx in range(x + gap, x + bw - ws - 1, ws + gap):
                c.paint((wx, wy, wx + ws, wy + ws), win)
        x += bw + int(rng.integers(-10, 12))


def tree(c, rng, x, y, s):
    trunk = jitter(rng, (90, 60, 40), 15)
    c.rect((x - 2 * s, y - 18 * s, x + 2 * s, y), trunk, VEGETATION)
    for _ in range(rng.integers(3, 7)):
        cx, cy = x + rng.normal(0, 7 * s), y - 22 * s + rng.normal(0, 6 * s)
        r = rng.uniform(7, 13) * s
        c.ellipse((cx - r, cy - r, cx + r, cy + r), jitter(rng, (50, 110, 40), 30), VEGETATION)


def car(c, rng, x, y, s):
    body = jitter(rng, rng.choice([(180, 30, 30), (30, 60, 160), (220, 220, 220), (30, 30, 30), (200, 170, 40), (90, 90, 95)]), 20)
    w, h = 46 * s, 14 * s
    c.rect((x - w / 2, y - h - 4 * s, x + w / 2, y - 4 * s), body, VEHICLE)
    c.polygon([(x - w / 3, y - h - 4 * s), (x - w / 5, y - h - 14 * s), (x + w / 4, y - h - 14 * s), (x + w / 2.6, y - h - 4 * s)], body, VEHICLE)
    c.d_rgb.polygon([(x - w / 4, y - h - 5 * s), (x - w / 6, y - h - 12 * s), (x + w / 5, y - h - 12 * s), (x + w / 3, y - h - 5 * s)], fill=(60, 80, 100))
    for wx in (x - w / 3, x + w / 3):
        c.ellipse((wx - 6 * s, y - 10 * s, wx + 6 * s, y + 2 * s), (20, 20, 20), VEHICLE)


def person(c, rng, x, y, s):
    shirt = jitter(rng, rng.choice([(200, 50, 50), (50, 90, 180), (230, 230, 230), (40, 40, 40), (240, 180, 40)]), 25)
    trousers = jitter(rng, rng.choice([(40, 40, 60), (90, 70, 50), (30, 30, 30)]), 15)
    skin = jitter(rng, rng.choice([(230, 190, 160), (170, 120, 90), (110, 75, 50)]), 15)
    c.rect((x - 4 * s, y - 16 * s, x - 0.5 * s, y), trousers, PERSON)
    c.rect((x + 0.5 * s, y - 16 * s, x + 4 * s, y), trousers, PERSON)
    c.rect((x - 5 * s, y - 32 * s, x + 5 * s, y - 15 * s), shirt, PERSON)
    c.ellipse((x - 4 * s, y - 41 * s, x + 4 * s, y - 32 * s), skin, PERSON)


def scene(rng, w, h):
    c = Canvas(w, h)
    horizon = int(h * rng.uniform(0.35, 0.55))
    sky(c, rng, horizon)
    buildings(c, rng, horizon)
    vx, left, right = ground(c, rng, horizon)
    objects = []
    for _ in range(rng.integers(1, 5)):
        objects.append(("tree", rng.uniform(0, w), rng.uniform(horizon + 2, h)))
    for _ in range(rng.integers(1, 4)):
        t = rng.uniform(0.15, 1.0)
        y = horizon + (h - horizon) * t
        xl, xr = vx + (left - vx) * t, vx + (right - vx) * t
        objects.append(("car", rng.uniform(xl + 0.15 * (xr - xl), xr - 0.15 * (xr - xl)), y))
    for _ in range(rng.integers(1, 5)):
        objects.append(("person", rng.uniform(0, w), rng.uniform(horizon + 4, h)))
    for kind, x, y in sorted(objects, key=lambda o: o[2]):  # far to near: near ones occlude
        s = 0.25 + 1.6 * (y - horizon) / (h - horizon) * (h / 240)
        {"tree": tree, "car": car, "person": person}[kind](c, rng, x, y, s)

    img = np.asarray(c.rgb, dtype=np.float32)
    img = img * rng.uniform(0.6, 1.3) + rng.uniform(-25, 25, size=3)  # exposure and colour cast
    img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 9), size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), c.lab


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    args = p.parse_args()
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "labels"), exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        img, lab = scene(rng, args.width, args.height)
        img.save(os.path.join(args.out, "images", f"{i:05d}.png"))
        lab.save(os.path.join(args.out, "labels", f"{i:05d}.png"))


if __name__ == "__main__":
    main()
