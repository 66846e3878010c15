"""Weights to start from or to validate: a fastload checkpoint's EMA, or an ultralytics/yolov5 checkpoint (its
release weights such as yolov5s.pt, or a best.pt of its train.py) read without YOLOv5's code and renamed to this
model's state dict, so `fastload train --weights yolov5s.pt` fine-tunes as YOLOv5's `--weights` does.

    w = read_weights("yolov5s.pt")           # Weights(state, names, size="s", source="yolov5")
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
from yolo.model import MODELS, SIZES, YOLOv5, is_p6, max_stride, scaled_width, strides

# YOLOv5 v6+ yolov5{n,s,m,l,x}.yaml layer index -> this model's module (11, 12, 15, 16, 19, 22: Upsample, Concat)
LAYERS = {0: "b0", 1: "b1.0", 2: "b1.1", 3: "b2.0", 4: "b2.1", 5: "b3.0", 6: "b3.1", 7: "b4.0", 8: "b4.1",
          9: "b4.2", 10: "h_lat5", 13: "h_c3_4", 14: "h_lat4", 17: "h_out3", 18: "h_down3", 20: "h_out4",
          21: "h_down4", 23: "h_out5", 24: "detect"}  # fmt: skip
# and of its P6 models, yolov5{n,s,m,l,x}6.yaml (13, 14, 17, 18, 21, 22, 25, 28, 31: Upsample, Concat)
LAYERS_P6 = {0: "b0", 1: "b1.0", 2: "b1.1", 3: "b2.0", 4: "b2.1", 5: "b3.0", 6: "b3.1", 7: "b4.0", 8: "b4.1",
             9: "b5.0", 10: "b5.1", 11: "b5.2", 12: "h_lat6", 15: "h_c3_5", 16: "h_lat5", 19: "h_c3_4",
             20: "h_lat4", 23: "h_out3", 24: "h_down3", 26: "h_out4", 27: "h_down4", 29: "h_out5", 30: "h_down5",
             32: "h_out6", 33: "detect"}  # fmt: skip
RELEASE = "https://github.com/ultralytics/yolov5/releases/download/v7.0"  # YOLOv5's attempt_download
RELEASE_ASSETS = {f"yolov5{size}.pt" for size in MODELS}  # yolov5n.pt .. yolov5x6.pt
EXPORTS = {".onnx": "onnx", ".torchscript": "torchscript"}  # exported models' suffixes (YOLOv5's): yolo.exported
YOLOV5_PACKAGES = ("models", "utils", "yolov5")  # release weights pickle `models.yolo...`; the PyPI package `yolov5...`


@dataclass
class Weights:
    state: dict[str, torch.Tensor]  # float32, this model's names
    names: list[str]  # class names
    size: str  # n, s, m, l, x; n6 .. x6
    source: str  # "fastload" or "yolov5"
    config: dict = field(default_factory=dict)  # a fastload checkpoint's TrainConfig (its store, image size, ...)
    epochs: int = 0  # epochs trained (0: not known)

    @property
    def stride(self) -> int:
        """The model's largest stride (32, or 64 for P6): what input sides are multiples of."""
        return max_stride(self.size)

    def model(self) -> YOLOv5:
        """The model these weights are for, loaded with them (on the CPU)."""
        model = YOLOv5(self.size, nc=len(self.names))
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
    p6 = any(k.startswith("model.33.") for k in theirs)  # Detect is layer 33 of a P6 model, 24 of a P5 one
    try:
        state = {rename(k, LAYERS_P6 if p6 else LAYERS): v.float() for k, v in theirs.items()}
    except (KeyError, ValueError):
        raise FastloadError(f"{name}: not a YOLOv5 v6+ n/s/m/l/x or n6..x6 model (layers differ)") from None
    nc = state["detect.m.0.weight"].shape[0] // 3 - 5 if "detect.m.0.weight" in state else 0
    size = next((s for s in MODELS if is_p6(s) == p6 and same_layout(state, s, nc)), None)
    if size is None:
        raise FastloadError(f"{name}: not a YOLOv5 v6+ n/s/m/l/x or n6..x6 model (tensor shapes differ)")
    names = getattr(model, "names", None) or [str(i) for i in range(nc)]
    names = [names[i] for i in range(nc)] if isinstance(names, dict) else list(names)
    state["detect.stride"] = torch.tensor(strides(size), dtype=torch.float32)  # an attribute in YOLOv5
    return Weights(state, names, size, "yolov5")


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


def layer_names(size: str) -> dict[int, str]:
    """YOLOv5's layer index -> this model's module, for a model size (n .. x6)."""
    return LAYERS_P6 if is_p6(size) else LAYERS


def transfer(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Load the tensors of `state` whose name and shape match the model's (a new class count leaves the detection
    convs as initialised, as YOLOv5's intersect_dicts); returns (transferred, the model's total)."""
    ours = model.state_dict()
    matching = {k: v for k, v in state.items() if k in ours and v.shape == ours[k].shape}
    model.load_state_dict(matching, strict=False)
    return len(matching), len(ours)


def freeze(model: YOLOv5, layers: int) -> int:
    """YOLOv5's `--freeze N`: no gradients for the parameters of its layers 0..N-1 (10 = the backbone, 24 = all but
    the detection convs; of a P6 model 12 and 33). Their batch-norm statistics still update, as in YOLOv5. Returns
    the parameters frozen."""
    prefixes = tuple(f"{name}." for index, name in layer_names(model.size).items() if index < layers)
    frozen = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
