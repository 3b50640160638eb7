#!/usr/bin/env python3
"""Writes TorchServe model archives exactly as torch-model-archiver lays them out (TorchServe's archiver cannot be
installed here), for the tests of `servesharp convert`: from a torchvision segmentation model's weights saved by
tools/models/export_segmentation.py --save-state.

    /usr/bin/python3 tools/convert/torchserve_archives.py --state model.pt --out DIR

DIR/eager.mar         model.py (one DeepLabV3 subclass) + model.pth (state dict, with an auxiliary FCN head),
                      handler image_segmenter, index_to_name.json, model-config.yaml
DIR/scripted.mar      model.pt (torch.jit.script of the same model), handler image_segmenter
DIR/custom.mar        as eager.mar, with handler.py (an ImageSegmenter subclass that logs what it finds)
DIR/two-classes.mar   a model.py defining two nn.Module classes
DIR/misfit.mar        a model.py whose model has 21 classes, with the 6-class state dict
DIR/not-an-archive.mar  a zip of the model files without MAR-INF/MANIFEST.json
DIR/branchy.mar       a tiny model whose forward branches on the input's width (an export that parity must catch)

The layout is torch-model-archiver's: a deflated zip with the files at its root and MAR-INF/MANIFEST.json
(json.dumps(indent=2): createdOn, runtime, model {modelName, serializedFile, handler, modelFile, modelVersion,
configFile}, archiverVersion) written last.
"""
import argparse
import json
import os
import tempfile
import zipfile
from datetime import datetime

import torch
from torchvision.models import segmentation

torch.set_num_threads(2)

MODEL_PY = '''from torchvision.models import segmentation
from torchvision.models.segmentation.deeplabv3 import DeepLabV3


class {cls}(DeepLabV3):
    """torchvision's {arch}, built without downloading weights: TorchServe loads the state dict into it."""

    def __init__(self, num_classes={classes}):
        built = segmentation.{arch}(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True)
        super().__init__(built.backbone, built.classifier, built.aux_classifier)
'''

SECOND_CLASS = '''

class Unused(DeepLabV3):
    def __init__(self):
        built = segmentation.{arch}(weights=None, weights_backbone=None, num_classes=2)
        super().__init__(built.backbone, built.classifier, None)
'''

HANDLER_PY = '''"""A custom handler as TorchServe users write them: image_segmenter's steps, plus a log line per image."""
import logging

import torch
from ts.torch_handler.image_segmenter import ImageSegmenter

logger = logging.getLogger(__name__)


class StreetSegmenter(ImageSegmenter):
    def initialize(self, context):
        super().initialize(context)
        logger.info("StreetSegmenter ready on %s", self.device)

    def postprocess(self, data):
        classes = torch.unique(data["out"].argmax(dim=1)).tolist()
        logger.info("classes present: %s", classes)
        return super().postprocess(data)
'''

MODEL_CONFIG = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 50\nresponseTimeout: 120\n"

# A tiny model with a mistake the ONNX export cannot see: Python control flow on the input's width. Tracing records
# the branch the 224-wide example took, so the exported model answers wrongly at any other width (where torch negates
# the logits, flipping every argmax): the parity check's input at another size must catch it.
BRANCHY_PY = '''import torch
from torch import nn


class WidthBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        logits = self.head(x)
        if x.shape[-1] != 224:
            logits = -logits
        return {"out": logits}
'''


def manifest(name, serialized, handler, model_file=None, config_file=None):
    model = {"modelName": name, "serializedFile": serialized, "handler": handler}
    if model_file:
        model["modelFile"] = model_file
    model["modelVersion"] = "1.0"
    if config_file:
        model["configFile"] = config_file
    return json.dumps({"createdOn": datetime.now().strftime("%d/%m/%Y %H:%M:%S"), "runtime": "python", "model": model,
                       "archiverVersion": "0.12.0"}, indent=2)


def write_mar(path, files, manifest_json):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, source in files.items():
            z.write(source, arcname)
        if manifest_json is not None:
            z.writestr(os.path.join("MAR-INF", "MANIFEST.json"), manifest_json)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, help="weights saved by export_segmentation.py --save-state")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    saved = torch.load(args.state, map_location="cpu")
    arch, classes = saved["arch"], saved["num_classes"]
    if not hasattr(segmentation, arch):
        raise SystemExit(f"{arch} is not a torchvision segmentation model")
    # The served head is the saved one; the auxiliary head (which TorchServe's DeepLab example also carries, and
    # which convert leaves out) gets seeded weights.
    torch.manual_seed(0)
    model = getattr(segmentation, arch)(weights=None, weights_backbone=None, num_classes=classes, aux_loss=True)
    missing, unexpected = model.load_state_dict(saved["state_dict"], strict=False)
    if unexpected or any(not k.startswith("aux_classifier.") for k in missing):
        raise SystemExit(f"the saved weights do not fit {arch}: missing {missing}, unexpected {unexpected}")
    model.eval()

    with tempfile.TemporaryDirectory() as tmp:
        def put(name, text):
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            return path

        pth = os.path.join(tmp, "model.pth")
        torch.save(model.state_dict(), pth)
        pt = os.path.join(tmp, "model.pt")
        torch.jit.script(model).save(pt)
        model_py = put("model.py", MODEL_PY.format(cls="DeepLabV3Segmenter", arch=arch, classes=classes))
        names = put("index_to_name.json", json.dumps({str(i): f"class_{i}" for i in range(classes)}, indent=2))
        config = put("model-config.yaml", MODEL_CONFIG)
        handler = put("handler.py", HANDLER_PY)
        common = {"index_to_name.json": names, "model-config.yaml": config}

        write_mar(os.path.join(args.out, "eager.mar"), {"model.py": model_py, "model.pth": pth, **common},
                  manifest("eager", "model.pth", "image_segmenter", "model.py", "model-config.yaml"))
        write_mar(os.path.join(args.out, "scripted.mar"), {"model.pt": pt, **common},
                  manifest("scripted", "model.pt", "image_segmenter", config_file="model-config.yaml"))
        write_mar(os.path.join(args.out, "custom.mar"), {"model.py": model_py, "model.pth": pth, "handler.py": handler, **common},
                  manifest("custom", "model.pth", "handler.py", "model.py", "model-config.yaml"))

        two = put("two/model.py", MODEL_PY.format(cls="DeepLabV3Segmenter", arch=arch, classes=classes) + SECOND_CLASS.format(arch=arch))
        # The two failures below happen before the weights are read: an empty state dict keeps those archives small.
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        write_mar(os.path.join(args.out, "two-classes.mar"), {"model.py": two, "model.pth": empty},
                  manifest("two-classes", "model.pth", "image_segmenter", "model.py"))
        misfit = put("misfit/model.py", MODEL_PY.format(cls="DeepLabV3Segmenter", arch=arch, classes=21))
        write_mar(os.path.join(args.out, "misfit.mar"), {"model.py": misfit, "model.pth": pth},
                  manifest("misfit", "model.pth", "image_segmenter", "model.py"))
        write_mar(os.path.join(args.out, "not-an-archive.mar"), {"model.py": model_py, "model.pth": empty}, None)

        branchy = put("branchy/model.py", BRANCHY_PY)
        torch.manual_seed(0)
        head = torch.nn.Conv2d(3, 4, 1)
        small = os.path.join(tmp, "branchy.pth")
        torch.save({f"head.{k}": v for k, v in head.state_dict().items()}, small)
        write_mar(os.path.join(args.out, "branchy.mar"), {"model.py": branchy, "model.pth": small},
                  manifest("branchy", "model.pth", "image_segmenter", "model.py"))
    print(args.out)


if __name__ == "__main__":
    main()
