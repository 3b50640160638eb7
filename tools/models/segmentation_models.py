"""Segmentation architectures for ServeSharp's tools: torchvision's, and a DeepLabV3+ built from torchvision parts.

DeepLabV3+ = a backbone whose intermediate layers are tapped with IntermediateLayerGetter (a high-level map for
the ASPP, a low-level stride-4 map for the decoder), torchvision's ASPP, and the V3+ decoder: the low-level map
projected to 48 channels, the ASPP output upsampled to it, concatenated, two 3x3 convs, a 1x1 classifier, and
bilinear upsampling to the input size.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn_resnet50,
    lraspp_mobilenet_v3_large,
)
from torchvision.models.segmentation.deeplabv3 import ASPP

VOC_CLASSES = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]

TORCHVISION = {
    "deeplabv3_mobilenet_v3_large": deeplabv3_mobilenet_v3_large,
    "deeplabv3_resnet50": deeplabv3_resnet50,
    "deeplabv3_resnet101": deeplabv3_resnet101,
    "fcn_resnet50": fcn_resnet50,
    "lraspp_mobilenet_v3_large": lraspp_mobilenet_v3_large,
}
PLUS = ["deeplabv3plus_mobilenet_v3_large", "deeplabv3plus_mobilenet_v3_small", "deeplabv3plus_resnet50"]
ARCHITECTURES = list(TORCHVISION) + PLUS


class DeepLabV3PlusDecoder(nn.Module):
    def __init__(self, low_channels: int, num_classes: int, channels: int = 256):
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(48 + channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.project(low)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([low, high], dim=1)))


class DeepLabV3Plus(nn.Module):
    """Returns {"out": logits at input resolution}, like torchvision's segmentation models."""

    def __init__(self, backbone: IntermediateLayerGetter, low_channels: int, high_channels: int, num_classes: int, rates, channels: int = 256):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(high_channels, list(rates), channels)
        self.decoder = DeepLabV3PlusDecoder(low_channels, num_classes, channels)

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        features = self.backbone(x)
        logits = self.decoder(features["low"], self.aspp(features["out"]))
        return OrderedDict(out=F.interpolate(logits, size=size, mode="bilinear", align_corners=False))


def deeplabv3plus(backbone: str, num_classes: int, output_stride: int, channels: int = 256) -> DeepLabV3Plus:
    if output_stride not in (8, 16):
        raise SystemExit("output stride must be 8 or 16")
    rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    if backbone in ("mobilenet_v3_large", "mobilenet_v3_small"):
        if output_stride != 16:
            raise SystemExit(f"deeplabv3plus_{backbone} has output stride 16 only; use deeplabv3plus_resnet50 for 8")
        features = getattr(models, backbone)(weights=None, dilated=True).features
        # The blocks that downsample (torchvision marks them _is_cn); the stride-4 map is the one before the stride-8 block.
        stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        low, high = stages[-4] - 1, stages[-1]
        if backbone == "mobilenet_v3_small":
            high -= 1  # the last inverted-residual block (96 channels) rather than the 576-channel 1x1 conv: a small model
        taps = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "out"})
        return DeepLabV3Plus(taps, features[low].out_channels, features[high].out_channels, num_classes, rates, channels)
    if backbone == "resnet50":
        dilation = [False, True, True] if output_stride == 8 else [False, False, True]
        resnet = models.resnet50(weights=None, replace_stride_with_dilation=dilation)
        taps = IntermediateLayerGetter(resnet, return_layers={"layer1": "low", "layer4": "out"})
        return DeepLabV3Plus(taps, 256, 2048, num_classes, rates)
    raise SystemExit(f"unknown DeepLabV3+ backbone {backbone}")


def build(arch: str, num_classes: int, output_stride: int = 16, aux: bool = False, channels: int = 256) -> nn.Module:
    if arch in TORCHVISION:
        kwargs = dict(weights=None, weights_backbone=None, num_classes=num_classes)
        if arch != "lraspp_mobilenet_v3_large":
            kwargs["aux_loss"] = aux
        return TORCHVISION[arch](**kwargs)
    if arch in PLUS:
        return deeplabv3plus(arch[len("deeplabv3plus_"):], num_classes, output_stride, channels)
    raise SystemExit(f"unknown architecture {arch}; choose from {', '.join(ARCHITECTURES)}")


def load_weights(model: nn.Module, path: str) -> None:
    """Loads a state dict: an official torchvision checkpoint or one this tool saved (strict: names must match)."""
    state = torch.load(path, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state and "arch" in state:
        state = state["state_dict"]
    model.load_state_dict(state, strict=True)


def checkpoint_has_aux(path: str) -> bool:
    state = torch.load(path, map_location="cpu")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return any(k.startswith("aux_classifier.") for k in state)
