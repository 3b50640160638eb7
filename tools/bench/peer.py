#!/usr/bin/env python3
"""The benchmark's peer: TorchServe's image_segmenter handler path, in Python, on the same weights ServeSharp serves.

    /usr/bin/python3 tools/bench/peer.py --state model.pt --port 9080 [--workers 1] [--threads 2]

POST /predictions/NAME (raw image body; ?mode=torchvision&resize_size=520 for the torchvision preset) runs what
TorchServe's image_segmenter runs per request: PIL decode, Resize(256), CenterCrop(224), ToTensor, Normalize,
eager torchvision inference, softmax, max, stack, .tolist(), json.dumps. GET /ping answers {"status": "Healthy"}.
In the torchvision preset the answer is at the photograph's size, as ServeSharp's is outside TorchServe's mode: the
logits are resized (bilinear) to it before the softmax, as torchvision's reference evaluation does. ?output=mask
answers the class map as an 8-bit PNG instead of JSON: the few lines a TorchServe user adds to postprocess for that.
As in TorchServe, each of the --workers is its own Python process with its own model copy and --threads torch
threads, batch 1; the HTTP front (a thread per connection) hands each request to a free worker and gets the JSON
back through a pipe, as TorchServe's frontend does through its backend socket.

Left out of TorchServe: the Java frontend (Netty) and its per-request framing and bookkeeping. Those cost TorchServe
time, so leaving them out favours this peer.
"""
import argparse
import io
import json
import multiprocessing
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import segmentation_models as sm  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TORCHSERVE = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])


def load(state_path):
    state = torch.load(state_path, map_location="cpu")
    model = sm.build(state["arch"], state["num_classes"], state["output_stride"], aux=state["aux"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


@torch.no_grad()
def handle(model, body, query):
    image = Image.open(io.BytesIO(body)).convert("RGB")
    torchvision = query.get("mode", ["torchserve"])[0] == "torchvision"
    if torchvision:
        size = int(query.get("resize_size", ["520"])[0])
        x = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(MEAN, STD)])(image)
    else:
        x = TORCHSERVE(image)
    out = model(x[None])["out"]
    if torchvision:
        out = torch.nn.functional.interpolate(out, size=(image.height, image.width), mode="bilinear", align_corners=False)
    if query.get("output", ["torchserve"])[0] == "mask":
        # A TorchServe user's postprocess for a PNG mask: argmax, uint8, PIL's PNG encoder.
        buffer = io.BytesIO()
        Image.fromarray(out.argmax(dim=1)[0].to(torch.uint8).numpy(), mode="L").save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    probs = torch.nn.functional.softmax(out, dim=1)
    best = torch.max(probs, dim=1)
    data = torch.stack([best.indices.type(best.values.dtype), best.values], dim=3)
    return json.dumps(data.tolist()[0]).encode(), "application/json"


_model = None


def _start_worker(state_path, threads):
    global _model
    torch.set_num_threads(threads)
    _model = load(state_path)


def _run(body, query):
    try:
        return (200, *handle(_model, body, query))
    except Exception as e:  # one bad request fails alone
        return 400, json.dumps({"code": 400, "type": "BadRequestException", "message": str(e)}).encode(), "application/json"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads per worker process")
    args = p.parse_args()
    # Worker processes start before any HTTP thread exists; "spawn" keeps torch's thread pools out of fork.
    workers = multiprocessing.get_context("spawn").Pool(args.workers, _start_worker, (args.state, args.threads))
    workers.starmap(_run, [(b"", {})] * args.workers)  # /ping answers once workers have loaded their models

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.reply(200, b'{"status": "Healthy"}')

        def do_POST(self):
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply(*workers.apply(_run, (body, parse_qs(url.query))))

        do_PUT = do_POST

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
