"""Weights to start from or to validate: a fastload checkpoint's EMA, or an ultralytics/yolov5 checkpoint (its
release weights such as yolov5s.pt, or a best.pt of its train.py) read without YOLOv5's code and renamed to this
model's state dict, so `fastload train --weights yolov5s.pt` fine-tunes as YOLOv5's `--weights` does. A YOLOv5
checkpoint of another architecture (yolov5s-ghost, a custom yaml, v5's Focus models) is built from the model yaml it
carries (yolo.yaml_model).

    w = read_weights("yolov5s.pt")           # Weights(state, names, arch="s", source="yolov5")
    done, total = transfer(model, w.state)   # the tensors whose name and shape match, as YOLOv5's intersect_dicts
"""

from __future__ import annotations

import os
import pickle
import types
import urllib.parse
from dataclasses import dataclass, field

import torch
from torch import nn

from fastload.errors import FastloadError
from fastload.fetch import fetched, is_url
from yolo.checkpoint import WEIGHT_KEYS
from yolo.classify import CLASSIFY_MODELS, yolov5_classifier_state
from yolo.model import LAYERS, LAYERS_P6, MODELS, SIZES, DetectionModel, YOLOv5, is_p6, scaled_width, strides
from yolo.yaml_model import FILE_KEY, YamlModel, build_model, grid_size, layer_names, yolov5_names

RELEASE = "https://github.com/ultralytics/yolov5/releases/download/v7.0"  # YOLOv5's attempt_download
RELEASE_ASSETS = {f"yolov5{size}.pt" for size in (*MODELS, *CLASSIFY_MODELS)}  # yolov5n.pt .. yolov5x-cls.pt
EXPORTS = {".onnx": "onnx", ".torchscript": "torchscript"}  # exported models' suffixes (YOLOv5's): yolo.exported
YOLOV5_PACKAGES = ("models", "utils", "yolov5")  # release weights pickle `models.yolo...`; the PyPI package `yolov5...`


@dataclass
class Weights:
    state: dict[str, torch.Tensor]  # float32, this model's names
    names: list[str]  # class names
    arch: str | dict  # n, s, m, l, x; n6 .. x6; n-seg .. x-seg; or a model yaml (yolo.yaml_model)
    source: str  # "fastload" or "yolov5"
    config: dict = field(default_factory=dict)  # a fastload checkpoint's TrainConfig (its store, image size, ...)
    epochs: int = 0  # epochs trained (0: not known)

    @property
    def stride(self) -> int:
        """The model's largest stride (32, or 64 for P6): what input sides are multiples of."""
        return grid_size(self.arch)

    @property
    def segments(self) -> bool:
        """Whether these are a segmentation model's weights (YOLOv5's Segment head: mask prototypes)."""
        return any(".proto." in k for k in self.state)

    def model(self) -> DetectionModel:
        """The model these weights are for, loaded with them (on the CPU)."""
        model = build_model(self.arch, nc=len(self.names))
        model.load_state_dict(self.state)
        return model


class YOLOv5Module(nn.Module):
    """A class of YOLOv5's code, unpickled as a plain module: same parameters, buffers and children."""


class _Unpickler(pickle.Unpickler):
    stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        if module.split(".")[0] not in YOLOV5_PACKAGES:
            return super().find_class(module, name)
        key = (module, name)
        if key not in self.stand_ins:
            self.stand_ins[key] = type(name, (YOLOv5Module,), {"__module__": module})
        return self.stand_ins[key]


_PICKLE = types.ModuleType("yolov5_pickle")  # what torch.load takes as its pickle module
_PICKLE.Unpickler, _PICKLE.load = _Unpickler, lambda f, **kw: _Unpickler(f, **kw).load()


def read_weights(path: str) -> Weights:
    """The weights in `path`, or a FastloadError naming the file and the reason. As YOLOv5's attempt_download: a
    URL is fetched to its file name here (unless that exists), and a missing release name (yolov5s.pt) from YOLOv5's
    release (or FASTLOAD_WEIGHTS_URL, a mirror); only what reads as weights is kept."""
    if os.path.splitext(path)[1].lower() in EXPORTS:
        raise FastloadError(f"{path}: an exported model runs in val and detect; this needs a .pt checkpoint")
    if is_url(path):
        url, path = path, os.path.basename(urllib.parse.unquote(path.split("?")[0]))
        if not os.path.isfile(path):
            return _fetch(url, path)
    elif not os.path.exists(path) and os.path.basename(path) in RELEASE_ASSETS:
        return _fetch(f"{os.environ.get('FASTLOAD_WEIGHTS_URL') or RELEASE}/{os.path.basename(path)}", path)
    return _read(path)


def _fetch(url: str, path: str) -> Weights:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with fetched(url, path, f"{path}: no such checkpoint") as part:
        weights = _read(part, url)
        os.replace(part, path)
    return weights


def _read(path: str, name: str | None = None) -> Weights:
    """The weights in `path`; errors name `name` (the URL a temporary file was fetched from) or the path."""
    name = name or path
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
    except FileNotFoundError:
        raise FastloadError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise FastloadError(f"{name}: not a fastload or YOLOv5 checkpoint ({type(e).__name__})") from None
    if isinstance(ckpt, dict) and all(k in ckpt for k in WEIGHT_KEYS):
        state, config = {k: v.float() for k, v in ckpt["ema"].items()}, ckpt["config"]
        return Weights(state, list(ckpt["names"]), config["model"], "fastload", config, ckpt["epoch"] + 1)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module):
        raise FastloadError(f"{name}: not a fastload or YOLOv5 checkpoint (no model)")
    theirs = model.state_dict()
    names = getattr(model, "names", None) or []
    classifier = yolov5_classifier_state(theirs)  # classify/train.py's (yolov5s-cls.pt)
    if classifier is not None:
        arch, nc, state = classifier
        return Weights(state, class_names(names, nc), arch, "yolov5")
    p6 = any(k.startswith("model.33.") for k in theirs)  # Detect is layer 33 of a P6 model, 24 of a P5 one
    try:
        state = {rename(k, LAYERS_P6 if p6 else LAYERS): v.float() for k, v in theirs.items()}
    except (KeyError, ValueError):
        return _read_yaml_model(model, theirs, names, name)
    nm = state["detect.proto.cv3.0.weight"].shape[0] if "detect.proto.cv3.0.weight" in state else 0  # seg: masks
    nc = state["detect.m.0.weight"].shape[0] // 3 - 5 - nm if "detect.m.0.weight" in state else 0
    size = next((s for s in MODELS if is_p6(s) == p6 and same_layout(state, s, nc)), None)
    if size is None:
        return _read_yaml_model(model, theirs, names, name)
    state["detect.stride"] = torch.tensor(strides(size), dtype=torch.float32)  # an attribute in YOLOv5
    return Weights(state, class_names(names, nc), size, "yolov5")


def _read_yaml_model(model: nn.Module, theirs: dict[str, torch.Tensor], names, name: str) -> Weights:
    """A YOLOv5 checkpoint of another architecture (yolov5s-ghost, YOLOv5 v5's Focus models, a custom yaml): built
    from the model yaml it carries, each of its tensors in its place."""
    arch = getattr(model, "yaml", None)
    if not isinstance(arch, dict):
        raise FastloadError(f"{name}: not a YOLOv5 n..x6 model, and it carries no model yaml to build it from")
    arch = {**arch, FILE_KEY: arch.get(FILE_KEY) or getattr(model, "yaml_file", None) or os.path.basename(name)}
    try:
        ours = YamlModel(arch)
    except FastloadError as e:
        raise FastloadError(f"{name}: its model yaml does not build here ({e})") from None
    state = ours.state_dict()
    for key, theirs_key in yolov5_names(ours).items():
        tensor = theirs.get(theirs_key)
        if tensor is None and key.endswith(".stride"):  # Detect's stride is an attribute in YOLOv5, not a tensor
            continue
        if tensor is None or tensor.shape != state[key].shape:
            raise FastloadError(f"{name}: its tensors do not fit the model its yaml builds (at {theirs_key})")
        state[key] = tensor.float()
    return Weights(state, class_names(names, ours.nc), arch, "yolov5")


def class_names(names, nc: int) -> list[str]:
    """YOLOv5's `model.names` (a list, or v7's dict) as a list of nc names; numbers where it has none."""
    if not names:
        return [str(i) for i in range(nc)]
    return [names[i] for i in range(nc)] if isinstance(names, dict) else list(names)


def rename(key: str, layers: dict[int, str] = LAYERS) -> str:
    """YOLOv5's `model.4.m.0.cv1.conv.weight` -> `b2.1.m.0.cv1.0.weight` (its Conv's conv/bn are our 0/1)."""
    top, index, *rest = key.split(".")
    if top != "model":
        raise ValueError(key)
    rest = ["0" if part == "conv" else "1" if part == "bn" else part for part in rest]
    return ".".join([layers[int(index)], *rest])


def same_layout(state: dict[str, torch.Tensor], size: str, nc: int) -> bool:
    """Whether `state` has exactly the tensor names and shapes of YOLOv5(size, nc) (but its stride buffer)."""
    first = state.get("b0.0.weight")
    if first is None or first.shape[0] != scaled_width(64, SIZES[size[0]][1]):  # the stem's width tells the size
        return False
    ours = YOLOv5(size, nc).state_dict()
    ours.pop("detect.stride")
    return ours.keys() == state.keys() and all(ours[k].shape == state[k].shape for k in ours)


def renamed(state: dict[str, torch.Tensor], src: dict[int, str], dst: dict[int, str]) -> dict[str, torch.Tensor]:
    """`state`'s tensors named by the layers `src` renamed to the layers `dst` of the same YOLOv5 indices: YOLOv5's
    layer index is what a built-in model and a yaml model have in common (yolov5s.pt into a yolov5s-p2.yaml)."""
    out = {}
    for key, tensor in state.items():
        for index, prefix in src.items():
            if key.startswith(prefix + ".") and index in dst:
                out[dst[index] + key[len(prefix) :]] = tensor
                break
    return out


def transfer(model: DetectionModel, state: dict[str, torch.Tensor], arch: str | dict | None = None) -> tuple[int, int]:
    """Load the tensors of `state` whose name and shape match the model's (a new class count leaves the detection
    convs as initialised, as YOLOv5's intersect_dicts); `arch`, the model `state` is of, renames them to `model`'s
    layers first. Returns (transferred, the model's total)."""
    if arch is not None:
        state = renamed(state, layer_names(arch), model.layer_names())
    ours = model.state_dict()
    matching = {k: v for k, v in state.items() if k in ours and v.shape == ours[k].shape}
    model.load_state_dict(matching, strict=False)
    return len(matching), len(ours)


def freeze(model: DetectionModel, layers: int) -> int:
    """YOLOv5's `--freeze N`: no gradients for the parameters of its layers 0..N-1 (10 = the backbone, 24 = all but
    the detection convs; of a P6 model 12 and 33). Their batch-norm statistics still update, as in YOLOv5. Returns
    the parameters frozen."""
    prefixes = tuple(f"{name}." for index, name in model.layer_names().items() if index < layers)
    frozen = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
