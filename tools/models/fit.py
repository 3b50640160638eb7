"""Short, seeded training that makes a segmentation model smooth enough for parity tests (see export_segmentation.py).

Target: each pixel's class is its hue bucket among (num_classes - 1), or class 0 where the colour is dark or
grey: a smooth function of the image that a DeepLab learns in a few hundred steps. Photographs come from
python3-skimage; random crops, scales and flips vary them. After training, BatchNorm running statistics are
re-estimated in train mode with momentum=None (a cumulative average), because MobileNetV3's BN momentum of 0.01
leaves them far from the data after a short run.
"""
import colorsys

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as samples

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat", "motorcycle_left"]


def photographs():
    images = []
    for name in PHOTOS:
        loader = getattr(samples, name, None)
        if loader is None:
            continue
        try:
            img = loader()
        except Exception:  # a sample that needs a download (pooch) is skipped
            continue
        if img.ndim == 3 and img.shape[2] >= 3:
            images.append(torch.from_numpy(np.ascontiguousarray(img[:, :, :3])).permute(2, 0, 1).float() / 255)
    return images


def target(rgb: torch.Tensor, num_classes: int) -> torch.Tensor:
    """rgb: 3×H×W in [0, 1] → H×W long."""
    r, g, b = rgb[0], rgb[1], rgb[2]
    mx, _ = rgb.max(0)
    mn, _ = rgb.min(0)
    sat = (mx - mn) / (mx + 1e-6)
    hue = torch.zeros_like(mx)
    d = (mx - mn) + 1e-6
    hue = torch.where(mx == r, ((g - b) / d) % 6, hue)
    hue = torch.where(mx == g, (b - r) / d + 2, hue)
    hue = torch.where(mx == b, (r - g) / d + 4, hue)
    bucket = (hue / 6 * (num_classes - 1)).long().clamp(0, num_classes - 2) + 1
    return torch.where((mx < 0.2) | (sat < 0.25), torch.zeros_like(bucket), bucket)


def batches(images, steps, size, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xs = []
        for _ in range(batch):
            img = images[int(torch.randint(len(images), (1,), generator=gen))]
            scale = float(torch.empty(1).uniform_(0.35, 1.0, generator=gen))
            h, w = img.shape[1:]
            img = F.interpolate(img[None], size=(max(size, int(h * scale)), max(size, int(w * scale))), mode="bilinear", align_corners=False)[0]
            y = int(torch.randint(img.shape[1] - size + 1, (1,), generator=gen))
            x = int(torch.randint(img.shape[2] - size + 1, (1,), generator=gen))
            crop = img[:, y:y + size, x:x + size]
            if torch.rand(1, generator=gen) < 0.5:
                crop = crop.flip(-1)
            xs.append(crop)
        yield torch.stack(xs)


def fit(model, num_classes: int, steps: int, seed: int, size: int = 160, batch: int = 4) -> None:
    images = photographs()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for i, rgb in enumerate(batches(images, steps, size, batch, seed)):
        labels = torch.stack([target(x, num_classes) for x in rgb])
        out = model((rgb - MEAN) / STD)["out"]
        loss = F.cross_entropy(out, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 50 == 0 or i == steps - 1:
            print(f"fit step {i} loss {loss.item():.3f}", flush=True)
    settle_batchnorm(model, images, seed)
    model.eval()


@torch.no_grad()
def settle_batchnorm(model, images, seed, rounds: int = 12) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for rgb in batches(images, rounds, 224, 4, seed + 1):
        model((rgb - MEAN) / STD)
    model.eval()
