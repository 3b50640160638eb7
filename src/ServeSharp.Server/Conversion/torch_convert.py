"""The torch half of `servesharp convert`: loads a TorchServe archive's model the way TorchServe's BaseHandler
loads it, exports it to ONNX, and runs the original in torch on the parity inputs. The C# command that runs this
script (embedded in servesharp) does the archive work, runs the ONNX model in ONNX Runtime on the same inputs and
writes the report; this script is not meant to be run by hand.

    python torch_convert.py probe                   # one JSON line: versions, or what cannot be imported
    python torch_convert.py convert REQUEST RESULT  # REQUEST/RESULT: JSON files

A problem the user can act on (a model file with two classes, a state dict that does not fit, a missing package)
is written to RESULT as {"error": "..."} with exit code 3; anything else is a traceback on stderr.
"""
import ast
import importlib
import inspect
import json
import os
import sys
import textwrap
from collections.abc import Mapping

REFUSED = 3
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# TorchServe's image_segmenter normalises with ImageNet's statistics; generated samples get the same treatment.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Refusal(Exception):
    """A reason to stop that the user can act on; its message is shown as it is."""


def version_of(name):
    try:
        return importlib.import_module(name).__version__
    except Exception:  # not installed, or broken: reported as absent
        return None


def installed_version(name):
    """The installed distribution's version, read from its metadata: nothing is imported."""
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        return None


def probe():
    # Finding torch without importing it keeps probing every Python on PATH cheap (importing torch takes seconds);
    # a torch that is installed but broken is reported by the conversion, when it imports it.
    from importlib import util
    found = {"executable": sys.executable, "python": sys.version.split()[0]}
    if sys.version_info < (3, 8):
        found["error"] = f"Python {found['python']} is too old (3.8 or later)"
    elif util.find_spec("torch") is None:
        found["error"] = "ModuleNotFoundError: No module named 'torch'"
    else:
        found.update(torch=installed_version("torch") or "(version unknown)", torchvision=installed_version("torchvision"),
                     onnx=installed_version("onnx"))
    print(json.dumps(found))
    return REFUSED if "error" in found else 0


# ---------------------------------------------------------------------------------------------------------------
# Loading, as TorchServe's BaseHandler.initialize does: a model file means eager (the one class it defines,
# instantiated without arguments, then load_state_dict of the serialized file loaded onto the CPU); otherwise a .pt
# serialized file is TorchScript (torch.jit.load).

def load_model(request):
    import torch
    model_dir = request["model_dir"]
    serialized = request.get("serialized_file")
    path = os.path.join(model_dir, serialized) if serialized else None
    if request.get("model_file"):
        return load_eager(model_dir, request["model_file"], serialized, path)
    if serialized and serialized.endswith(".pt"):
        try:
            return torch.jit.load(path, map_location="cpu").eval(), {"kind": "torchscript", "file": serialized}
        except Exception as e:
            raise Refusal(f"{serialized} is not a TorchScript model torch {torch.__version__} can load "
                          f"(torch.jit.load: {first_line(e)}); an eager state dict needs the archive's --model-file")
    raise Refusal(f"serialized file '{serialized}': TorchServe loads it only with a model file (eager: --model-file and a "
                  "state dict) or as TorchScript (.pt), and this archive has neither")


def load_eager(model_dir, model_file, serialized, path):
    import torch
    from torch import nn
    # TorchServe imports the model file by its module name with the model folder on the path, so helper modules
    # shipped as extra files import the same way.
    sys.path.insert(0, model_dir)
    module_name = os.path.basename(model_file).split(".")[0]
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise Refusal(f"{model_file} cannot be imported: {type(e).__name__}: {e}")
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__ and issubclass(c, nn.Module)]
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise Refusal(f"{model_file} defines {len(classes)} nn.Module classes ({found}); TorchServe's eager loading needs "
                      "exactly one: the class it instantiates (move the others into an extra file and import them)")
    cls = classes[0]
    try:
        model = cls()
    except Exception as e:
        raise Refusal(f"{model_file}: {cls.__name__}() failed ({type(e).__name__}: {e}); TorchServe instantiates the "
                      "model class without arguments")
    if path:
        try:
            state = torch.load(path, map_location="cpu")
        except Exception as e:
            raise Refusal(f"{serialized} cannot be loaded with torch.load: {first_line(e)}")
        if not isinstance(state, Mapping):
            raise Refusal(f"{serialized} holds a {type(state).__name__}, not a state dict: TorchServe's eager loading "
                          f"passes it to {cls.__name__}.load_state_dict")
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise Refusal(f"{serialized} does not fit {cls.__name__} from {model_file}: {shorten(str(e))}")
    return model.eval(), {"kind": "eager", "file": serialized, "class": cls.__name__, "model_file": model_file}


def first_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def shorten(text, limit=600):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------------------------------------
# Inputs: --samples images through TorchServe's image_segmenter steps (Resize, CenterCrop, ToTensor, Normalize),
# else generated ones. Generated images are smooth colour fields with a few solid shapes quantised to 8 bits, so
# they look to the model like decoded photographs rather than noise.

def generated(count, height, width, seed):
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(seed)
    for i in range(count):
        coarse = torch.rand(1, 3, 3 + i % 4, 4 + i % 3, generator=gen)
        img = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)[0]
        yy = torch.arange(height).view(-1, 1).float()
        xx = torch.arange(width).view(1, -1).float()
        for _ in range(3):
            cy, cx = float(torch.rand(1, generator=gen)) * height, float(torch.rand(1, generator=gen)) * width
            ry, rx = (0.1 + 0.25 * float(torch.rand(1, generator=gen))) * height, (0.1 + 0.25 * float(torch.rand(1, generator=gen))) * width
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            colour = torch.rand(3, generator=gen)
            img = torch.where(inside, colour.view(3, 1, 1), img)
        img = (img * 255).round() / 255
        yield normalise(img)[None]


def normalise(img):
    import torch
    return (img - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def from_folder(folder, height, width, limit):
    try:
        from PIL import Image
        from torchvision import transforms as T
    except Exception as e:
        raise Refusal(f"--samples needs PIL and torchvision (TorchServe's image_segmenter preprocessing): {first_line(e)}")
    if not os.path.isdir(folder):
        raise Refusal(f"--samples {folder}: no such folder")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise Refusal(f"--samples {folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    # For 224x224 this is exactly TorchServe's Resize(256), CenterCrop(224).
    steps = T.Compose([T.Resize(round(max(height, width) * 256 / 224)), T.CenterCrop((height, width)), T.ToTensor(),
                       T.Normalize(MEAN, STD)])
    for name in files[:limit]:
        try:
            img = Image.open(os.path.join(folder, name)).convert("RGB")
        except Exception as e:
            raise Refusal(f"--samples: {name} is not an image PIL can read ({first_line(e)})")
        yield name, steps(img)[None]


def parity_inputs(request):
    height, width = request["input_size"]
    inputs = []
    if request.get("samples"):
        inputs += list(from_folder(request["samples"], height, width, request.get("max_samples", 16)))
    else:
        inputs += [(f"generated {i + 1} ({height}x{width})", x) for i, x in enumerate(generated(request.get("sample_count", 4), height, width, request.get("seed", 0)))]
    if request.get("dynamic", True):
        # One more at another size and aspect: an export that baked the example's size in fails here.
        h2, w2 = max(32, (height * 5 // 4 + 7) // 8 * 8), max(32, (width * 3 // 4 + 7) // 8 * 8)
        inputs += [(f"generated at {h2}x{w2} (dynamic axes)", next(generated(1, h2, w2, request.get("seed", 0) + 1)))]
    return inputs


# ---------------------------------------------------------------------------------------------------------------
# Export. The exported graph takes "input" (float N×3×H×W) and gives "out": ServeSharp's image_segmenter looks for an
# output of that name. A model that answers a dict (torchvision's {"out", "aux"}) is exported with the entry the
# handler reads; a tuple with its first element.

def pick_wrappers():
    import torch
    from torch import nn

    class PickKey(nn.Module):
        key: torch.jit.Final[str]

        def __init__(self, model, key):
            super().__init__()
            self.model = model
            self.key = key

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)[self.key]

    class PickFirst(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)[0]

    class Whole(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

    return PickKey, PickFirst, Whole


def describe_output(y, wanted):
    """(what the model answers, the entry exported, a function picking it)."""
    import torch
    if isinstance(y, Mapping):
        keys = [str(k) for k in y.keys()]
        key = wanted if wanted in y else keys[0]
        return {"type": "dict", "keys": keys, "exported": key}, (lambda r: r[key])
    if isinstance(y, (tuple, list)):
        return {"type": "tuple", "length": len(y), "exported": "0"}, (lambda r: r[0])
    if isinstance(y, torch.Tensor):
        return {"type": "tensor", "exported": None}, (lambda r: r)
    raise Refusal(f"the model answers a {type(y).__name__}; ServeSharp exports models that answer a tensor, a tuple or a dict of tensors")


def wrap(model, output):
    PickKey, PickFirst, Whole = pick_wrappers()
    if output["type"] == "dict":
        return PickKey(model, output["exported"])
    if output["type"] == "tuple":
        return PickFirst(model)
    return Whole(model)


def fold_dict_lookups(graph):
    """torchvision's scripted models build their answer as result = OrderedDict(); result["out"] = x, and the ONNX
    exporter has no dict operators: each constant-key lookup is replaced by the tensor stored under that key."""
    def constant(value):
        node = value.node()
        return node.output().toIValue() if node.kind() == "prim::Constant" else None

    stores, done = {}, []
    for node in list(graph.nodes()):
        kind, args = node.kind(), list(node.inputs())
        if kind == "aten::dict" and not args:
            stores[node.output().unique()] = {}
        elif kind == "prim::DictConstruct":
            stores[node.output().unique()] = {constant(args[i]): args[i + 1] for i in range(0, len(args), 2)}
        elif kind == "aten::_set_item" and args[0].unique() in stores:
            stores[args[0].unique()][constant(args[1])] = args[2]
            done.append(node)
        elif kind == "aten::__getitem__" and args[0].unique() in stores:
            stored = stores[args[0].unique()].get(constant(args[1]))
            if stored is None:
                return
            node.output().replaceAllUsesWith(stored)
            done.append(node)
    for node in reversed(done):
        node.destroy()
    import torch
    torch._C._jit_pass_dce(graph)


def export(model, loaded, output, example, request):
    import torch
    net = wrap(model, output).eval()
    if loaded["kind"] == "torchscript":
        # A loaded ScriptModule cannot be traced from Python; freezing inlines it into one graph the exporter takes.
        net = torch.jit.freeze(torch.jit.script(net).eval())
        fold_dict_lookups(net.graph)
    with torch.inference_mode():
        rank = net(example).dim()
    dynamic = request.get("dynamic", True)
    spatial = {0: "N", 2: "H", 3: "W"} if dynamic else {0: "N"}
    out_axes = {0: "N"}
    if dynamic and rank == 4:
        out_axes = {0: "N", 2: "out_H", 3: "out_W"}
    elif dynamic and rank == 3:
        out_axes = {0: "N", 1: "out_H", 2: "out_W"}
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch 2.9+ defaults to the dynamo exporter; dynamic_axes belong to the TorchScript one
    try:
        with torch.no_grad():
            torch.onnx.export(net, example, request["onnx"], input_names=["input"], output_names=["out"],
                              dynamic_axes={"input": spatial, "out": out_axes}, opset_version=request["opset"],
                              do_constant_folding=True, **kwargs)
    except Exception as e:
        raise Refusal(f"torch.onnx.export (torch {torch.__version__}, opset {request['opset']}) failed: {shorten(first_line(e), 800)}")
    converted = weights_to_fp16(request["onnx"]) if request.get("fp16") else None
    return {"opset": request["opset"], "dynamic": dynamic, "output_rank": rank, "fp16_tensors": converted}


def weights_to_fp16(path):
    """Stores the large float tensors (the weights) as float16 behind a Cast to float: half the file, the same float
    input and output for the handler. ONNX Runtime folds the casts when it loads the model and computes in float."""
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except Exception as e:
        raise Refusal(f"--fp16 needs the onnx package in this Python: {first_line(e)}")
    model = onnx.load(path)
    graph = model.graph
    count, casts = 0, []
    for init in list(graph.initializer):
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims) >= 1024:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
            graph.initializer.remove(init)
            graph.initializer.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_cast"))
            count += 1
    nodes = list(graph.node)
    rebuilt = list(casts)
    for node in nodes:
        rebuilt.append(node)
        if node.op_type != "Constant" or not node.attribute or node.attribute[0].name != "value":
            continue
        tensor = node.attribute[0].t
        if tensor.data_type != TensorProto.FLOAT or np.prod(tensor.dims) < 1024:
            continue
        original = node.output[0]
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), original + "_fp16")
        node.attribute[0].t.CopyFrom(half)
        node.output[0] = original + "_fp16"
        rebuilt.append(helper.make_node("Cast", [node.output[0]], [original], to=TensorProto.FLOAT, name=original + "_cast"))
        count += 1
    del graph.node[:]
    graph.node.extend(rebuilt)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return count


# ---------------------------------------------------------------------------------------------------------------
# A custom handler.py cannot run in ServeSharp: what it does is described (imports, classes, hooks with their
# source) for the C# skeleton that takes its place. It is parsed, never imported.

HOOKS = ("initialize", "preprocess", "inference", "postprocess", "handle")


def describe_handler(model_dir, handler):
    file = handler.split(":", 1)[0]
    path = os.path.join(model_dir, file)
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        tree = ast.parse(source, filename=file)
    except SyntaxError as e:
        raise Refusal(f"handler {file} is not valid Python ({e.msg}, line {e.lineno})")
    except OSError as e:
        raise Refusal(f"handler {file} cannot be read: {e}")
    imports = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            imports += [f"{module}.{a.name}" if node.module else f"{module}{a.name}" for a in node.names]

    def method(fn):
        # The segment's first line starts at the def; the others keep the file's indentation: dedent them together.
        segment = ast.get_source_segment(source, fn) or ""
        return {"name": fn.name, "line": fn.lineno, "source": textwrap.dedent(" " * fn.col_offset + segment)}

    classes = [{"name": c.name, "line": c.lineno, "bases": [ast.get_source_segment(source, b) or "?" for b in c.bases],
                "methods": [method(m) for m in c.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]}
               for c in tree.body if isinstance(c, ast.ClassDef)]
    functions = [method(fn) for fn in tree.body if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return {"file": file, "entry": handler.split(":", 1)[1] if ":" in handler else None, "imports": imports,
            "classes": classes, "functions": functions}


# ---------------------------------------------------------------------------------------------------------------

def write_tensor(tensor, path):
    import numpy as np
    array = tensor.detach().cpu().contiguous().numpy()
    dtype = "<f4" if array.dtype.kind == "f" else "<i8"
    array.astype(dtype).tofile(path)
    return {"file": os.path.basename(path), "shape": list(array.shape), "dtype": "float32" if dtype == "<f4" else "int64"}


def convert(request_path, result_path):
    try:
        import torch
    except Exception as e:  # installed, but it does not import (a missing shared library, a mismatched build)
        raise Refusal(f"torch is installed in {sys.executable} but does not import: {type(e).__name__}: {e}")
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    if request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    result = {"python": sys.version.split()[0], "executable": sys.executable, "torch": torch.__version__,
              "torchvision": version_of("torchvision"), "onnx_package": version_of("onnx")}
    handler = request.get("handler") or {}
    if handler.get("file"):
        result["handler"] = describe_handler(request["model_dir"], handler["file"])
    model, loaded = load_model(request)
    result["model"] = loaded

    inputs = parity_inputs(request)
    torch.manual_seed(request.get("seed", 0))
    with torch.inference_mode():
        try:
            first = model(inputs[0][1])
        except Exception as e:
            raise Refusal(f"the model fails on a 1x3x{request['input_size'][0]}x{request['input_size'][1]} input: {shorten(first_line(e))}")
        output, pick = describe_output(first, handler.get("output", "out"))
        result["model"]["output"] = output
        work = request["work"]
        samples = []
        for i, (name, x) in enumerate(inputs):
            y = pick(model(x))
            if not isinstance(y, torch.Tensor):
                raise Refusal(f"the model's output {output.get('exported')!r} is a {type(y).__name__}, not a tensor")
            samples.append({"name": name, "input": write_tensor(x, os.path.join(work, f"input-{i}.bin")),
                            "torch": write_tensor(y, os.path.join(work, f"torch-{i}.bin"))})
    result["samples"] = samples
    result["export"] = export(model, loaded, output, inputs[0][1], request)
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "probe":
        return probe()
    if len(argv) != 4 or argv[1] != "convert":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return convert(argv[2], argv[3])
    except Refusal as e:
        with open(argv[3], "w", encoding="utf-8") as f:
            json.dump({"error": str(e)}, f)
        return REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
