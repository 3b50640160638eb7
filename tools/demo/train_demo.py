#!/usr/bin/env python3
"""Trains ServeSharp's demo model — a small DeepLabV3+ (MobileNetV3-Small backbone tapped at stride 4 and 16, ASPP,
V3+ decoder) — on procedural street scenes, then exports it to ONNX and archives it as model-store/deeplab.mar.

    /usr/bin/python3 tools/demo/train_demo.py [--minutes 25] [--seed 0] [--out model-store]

Data, initialisation and batch order come from the seed. With --steps the learning-rate schedule follows the step
count and the run is reproducible anywhere; with only --minutes it follows the clock (the step count then depends on
the machine). It re-estimates BatchNorm statistics, reports mIoU on a held-out set generated with another seed, and
writes deeplab.mar with index_to_name.json, palette.json and a model-config.yaml.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "models"))
sys.path.insert(0, HERE)
import scenes  # noqa: E402
import segmentation_models as sm  # noqa: E402
from export_segmentation import export  # noqa: E402

torch.set_num_threads(2)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
ARCH, CHANNELS = "deeplabv3plus_mobilenet_v3_small", 128
TRAIN_SEED_OFFSET, HELD_OUT_SEED = 1, 999_000


def dataset(count, seed, w=320, h=240):
    rng = np.random.default_rng(seed)
    xs, ys = np.empty((count, h, w, 3), np.uint8), np.empty((count, h, w), np.uint8)
    for i in range(count):
        img, lab = scenes.scene(rng, w, h)
        xs[i], ys[i] = np.asarray(img), np.asarray(lab)
    return torch.from_numpy(xs).permute(0, 3, 1, 2), torch.from_numpy(ys).long()


def normalise(x):
    return (x.float() / 255 - MEAN) / STD


def miou(model, xs, ys, classes=6):
    conf = torch.zeros(classes, classes, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(xs), 16):
            pred = model(normalise(xs[i:i + 16]))["out"].argmax(1)
            conf += torch.bincount(ys[i:i + 16].flatten() * classes + pred.flatten(), minlength=classes * classes).view(classes, classes)
    iou = conf.diag().float() / (conf.sum(0) + conf.sum(1) - conf.diag()).float().clamp(min=1)
    return iou.mean().item(), (conf.diag().sum() / conf.sum()).item(), iou.tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--steps", type=int, default=0, help="train exactly this many steps (schedule by step); 0: by --minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-scenes", type=int, default=1600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=176, help="square training crops of the 320x240 scenes (full scale)")
    p.add_argument("--out", default=os.path.join(ROOT, "model-store"))
    args = p.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    xs, ys = dataset(args.train_scenes, args.seed + TRAIN_SEED_OFFSET)
    vx, vy = dataset(100, HELD_OUT_SEED)
    print(f"generated {len(xs)} training scenes in {time.time() - t0:.0f}s", flush=True)

    model = sm.build(ARCH, len(scenes.CLASSES), 16, channels=CHANNELS)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    budget, start, step = args.minutes * 60, time.time(), 0
    while (step < args.steps) if args.steps else (time.time() - start < budget):
        frac = step / args.steps if args.steps else (time.time() - start) / budget
        for g in opt.param_groups:
            g["lr"] = 3e-3 * (1 - min(frac, 0.98)) ** 0.9  # poly decay over the time budget
        idx = torch.randint(len(xs), (args.batch,), generator=gen)
        top = int(torch.randint(xs.shape[2] - args.crop + 1, (1,), generator=gen))
        left = int(torch.randint(xs.shape[3] - args.crop + 1, (1,), generator=gen))
        x = xs[idx, :, top:top + args.crop, left:left + args.crop]
        y = ys[idx, top:top + args.crop, left:left + args.crop]
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        model.train()
        loss = F.cross_entropy(model(normalise(x))["out"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step} {time.time() - start:.0f}s loss {loss.item():.3f}", flush=True)
        step += 1

    settle_batchnorm(model, xs, gen)
    m, acc, per_class = miou(model, vx, vy)
    print(f"trained {step} steps in {(time.time() - start) / 60:.1f} min; held-out mIoU {m:.4f}, pixel accuracy {acc:.4f}", flush=True)
    print("per class IoU: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(scenes.CLASSES, per_class)), flush=True)
    write_archive(model, args.out, step, m)


@torch.no_grad()
def settle_batchnorm(model, xs, gen, batches=20):
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    for _ in range(batches):
        model(normalise(xs[torch.randint(len(xs), (16,), generator=gen)]))
    model.eval()


def write_archive(model, out, steps, held_out_miou):
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "deeplab.onnx")
        export(model, onnx_path, aux=False, argmax=False)
        names = os.path.join(tmp, "index_to_name.json")
        with open(names, "w") as f:
            json.dump({str(i): n for i, n in enumerate(scenes.CLASSES)}, f, indent=2)
        palette = os.path.join(HERE, "palette.json")
        with open(palette, "w") as f:
            json.dump([list(c) for c in scenes.PALETTE], f)
        config = os.path.join(tmp, "model-config.yaml")
        with open(config, "w") as f:
            f.write(f"""# ServeSharp demo: DeepLabV3+ (MobileNetV3-Small) trained {steps} steps on procedural street scenes
# (tools/demo/train_demo.py); held-out mIoU {held_out_miou:.4f} at training time.
minWorkers: 1
maxWorkers: 2
batchSize: 4
maxBatchDelay: 20
responseTimeout: 120
handler:
  # Images are scaled so the shorter side is 240 (the training scale); answers come back at full resolution.
  mode: torchvision
  resize_size: 240
  output: color
  alpha: 0.5
""")
        subprocess.run([os.path.join(ROOT, "servesharp-archiver"), "--model-name", "deeplab", "--version", "1.0",
                        "--serialized-file", onnx_path, "--handler", "image_segmenter", "--extra-files", f"{names},{palette}",
                        "--config-file", config, "--export-path", out, "-f"], check=True)


if __name__ == "__main__":
    main()
