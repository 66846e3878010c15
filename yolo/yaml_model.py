"""Detection models built from a YOLOv5 model yaml (`--cfg yolov5s-ghost.yaml`, a custom architecture, or the
`yaml` a YOLOv5 checkpoint carries), as YOLOv5's parse_model builds them: layers `model.0` .. `model.N` in the
yaml's order, each `[from, number, module, args]` scaled by depth_multiple and width_multiple, Detect last. The
parameters have YOLOv5's names (but a Conv's conv/bn are 0/1, as in yolo.model), so YOLOv5's checkpoints of these
models load tensor by tensor.

    arch = read_model_yaml("models/hub/yolov5-p2.yaml")   # the yaml as a dict (and its file name)
    model = build_model(arch, nc=3)                         # a YamlModel; build_model("s", nc=3) is a YOLOv5
    model.detect.stride                                     # tensor([ 4.,  8., 16., 32.]): found by a forward pass
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re

import torch
import yaml
from torch import nn

from fastload.errors import FastloadError
from yolo import blocks
from yolo.model import (
    C3,
    LAYERS,
    LAYERS_P6,
    SPPF,
    Bottleneck,
    Conv,
    Detect,
    DetectionModel,
    Segment,
    YOLOv5,
    is_p6,
    model_summary,
    scaled_depth,
    scaled_width,
    strides,
)

STRIDE_PROBE = 256  # the square side of the forward pass that finds the strides (YOLOv5's)
BLOCKS = {cls.__name__: cls for cls in (Conv, Bottleneck, C3, SPPF, Detect, Segment)} | {
    name: cls for name, cls in vars(blocks).items() if isinstance(cls, type) and issubclass(cls, nn.Module)
}
WIDENED = {"Conv", "GhostConv", "Bottleneck", "GhostBottleneck", "SPP", "SPPF", "DWConv", "Focus", "CrossConv",
           "BottleneckCSP", "C3", "C3TR", "C3SPP", "C3Ghost", "nn.ConvTranspose2d", "DWConvTranspose2d",
           "C3x"}  # whose first argument is output channels, scaled by width_multiple  # fmt: skip
REPEATED_INSIDE = {"BottleneckCSP", "C3", "C3TR", "C3Ghost", "C3x"}  # `number` is their n, not copies
FILE_KEY = "yaml_file"  # where the dict keeps its file's name (YOLOv5 keeps it beside, as model.yaml_file)


def read_model_yaml(path: str) -> dict:
    """The model yaml at `path` as a dict (checked by building it once), or a FastloadError naming the file and the
    reason."""
    try:
        with open(path) as f:
            arch = yaml.safe_load(f)
    except OSError as e:
        raise FastloadError(f"{path}: {e.strerror.lower() if e.strerror else 'cannot be read'}") from None
    except yaml.YAMLError as e:
        raise FastloadError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    if (
        not isinstance(arch, dict)
        or not isinstance(arch.get("backbone"), list)
        or not isinstance(arch.get("head"), list)
    ):
        raise FastloadError(f"{path}: not a YOLOv5 model yaml (it needs backbone and head lists)")
    yaml_strides({**arch, FILE_KEY: path})  # builds it: its mistakes now, naming the file, not later in a training
    return {**arch, FILE_KEY: arch.get(FILE_KEY) or os.path.basename(path)}


def arch_name(arch: str | dict) -> str:
    """What to call a model in messages: a size (s, s6) or its yaml's file name."""
    return arch if isinstance(arch, str) else arch.get(FILE_KEY, "model yaml")


def is_classifier(arch: str | dict) -> bool:
    """yolo.classify.classify_arch (imported when asked: it builds on this module's models)."""
    from yolo.classify import classify_arch

    return classify_arch(arch)


def build_model(arch: str | dict, nc: int, anchors=None) -> DetectionModel:
    """The model of `arch`: a YOLOv5 of a size name (n .. x6), a classifier's (n-cls .. x-cls: yolo.classify), or a
    YamlModel of a model yaml dict."""
    if is_classifier(arch):
        from yolo.classify import classifier  # (it builds on yolo.model)

        return classifier(arch, nc)
    return YOLOv5(arch, nc, anchors) if isinstance(arch, str) else YamlModel(arch, nc, anchors)


def layer_names(arch: str | dict) -> dict[int, str]:
    """YOLOv5's layer index -> the module of that layer, for a model size (n .. x6) or a model yaml."""
    if isinstance(arch, dict):
        return {i: f"model.{i}" for i in range(len(arch["backbone"]) + len(arch["head"]))}
    if arch.endswith("-cls"):
        from yolo.classify import LAYERS_CLS

        return LAYERS_CLS
    if is_classifier(arch):  # a torchvision model's children
        return build_model(arch, 1).layer_names()
    return LAYERS_P6 if is_p6(arch) else LAYERS


def segment_arch(arch: str | dict) -> bool:
    """Whether a model size (n-seg .. x-seg) or model yaml (Segment last) is a segmentation model."""
    if isinstance(arch, str):
        return arch.endswith("-seg")
    return bool(arch.get("head")) and str(arch["head"][-1][2]) == "Segment"


def fitted_anchors(arch: str | dict) -> bool:
    """Whether a model yaml leaves its anchors to autoanchor (YOLOv5's `anchors: 3`: k-means on the data)."""
    return isinstance(arch, dict) and isinstance(arch.get("anchors"), int)


def grid_size(arch: str | dict) -> int:
    """What image sides must be multiples of (YOLOv5's gs): the largest stride of the detection levels (a yaml's are
    found by building it), at least 32, since a yaml model may downsample past its last level (yolov5-p34.yaml)."""
    if is_classifier(arch):
        return 32  # (YOLOv5's for its classifiers and torchvision's)
    return max(*(strides(arch) if isinstance(arch, str) else yaml_strides(arch)), 32)


_STRIDES: dict[str, tuple[int, ...]] = {}  # a model yaml (its file name left out) -> its strides; the last 16


def yaml_strides(arch: dict) -> tuple[int, ...]:
    """The detection levels' strides of a model yaml, found by building it once (whatever file it was read from)."""
    key = json.dumps({k: v for k, v in arch.items() if k != FILE_KEY}, sort_keys=True)
    if key not in _STRIDES:
        found = tuple(int(s) for s in YamlModel(arch, nc=1).detect.stride.tolist())
        while len(_STRIDES) >= 16:
            _STRIDES.pop(next(iter(_STRIDES)))
        _STRIDES[key] = found
    return _STRIDES[key]


class YamlModel(DetectionModel):
    """A YOLOv5 DetectionModel from its yaml dict: `nc` (and `anchors`, pixel pairs per level) replace the yaml's,
    as YOLOv5's train.py does with the dataset's class count and a hyp file's anchors."""

    def __init__(self, arch: dict, nc: int | None = None, anchors=None) -> None:
        super().__init__()
        arch = copy.deepcopy(arch)
        if nc is not None:
            arch["nc"] = nc
        if anchors is not None:
            arch["anchors"] = [[v for pair in level for v in pair] for level in anchors]
        self.yaml, self.nc = arch, arch["nc"]
        layers, self.froms, self.save, self.built = parse_layers(arch)
        self.model = nn.ModuleList(layers)
        for m in self.modules():  # YOLOv5's initialize_weights: its BatchNorm settings for every one (BottleneckCSP's)
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
        self.eval()  # the probe leaves the BatchNorm statistics as they are
        try:
            with torch.no_grad():
                maps = self.forward(torch.zeros(1, arch.get("ch", 3), STRIDE_PROBE, STRIDE_PROBE))[1]
        except RuntimeError as e:  # shapes that do not meet (a Concat of two scales, channels a layer did not expect)
            raise FastloadError(f"{arch_name(arch)}: a {STRIDE_PROBE}x{STRIDE_PROBE} image does not pass through its "
                                f"layers ({str(e).splitlines()[0]})") from None  # fmt: skip
        self.train()
        self.detect.set_strides([STRIDE_PROBE / m.shape[-2] for m in maps])
        self.detect.init_biases()

    @property
    def arch(self) -> dict:
        return self.yaml

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    def layer_names(self) -> dict[int, str]:
        return layer_names(self.yaml)

    def forward(self, x: torch.Tensor):
        saved = []
        for i, (layer, src) in enumerate(zip(self.model, self.froms, strict=True)):
            if src != -1:
                x = saved[src] if isinstance(src, int) else [x if j == -1 else saved[j] for j in src]
            x = layer(x)
            saved.append(x if i in self.save else None)
        return x


def describe(model: DetectionModel, arch: str | dict, imgsz: int = 640) -> tuple[dict, list[str]]:
    """YOLOv5's model summary (yolo.model.model_summary) and the lines that show it: a yaml's layer table, then
    `name: L layers, P parameters, G GFLOPs at imgsz`."""
    about = model_summary(model, imgsz)
    lines = [layer_table(model)] if isinstance(arch, dict) else []
    lines.append(f"{arch_name(arch)}: {about['layers']} layers, {about['parameters']:,} parameters, "
                 f"{about['gflops']:.1f} GFLOPs at {imgsz}")  # fmt: skip
    return about, lines


def layer_table(model: YamlModel) -> str:
    """YOLOv5's table of a model built from a yaml: per layer its input, copies, parameters, module and arguments."""
    lines = [f"{'':>3}{'from':>18}{'n':>3}{'params':>11}  {'module':<20}arguments"]
    for i, (layer, src, (n, name, args)) in enumerate(zip(model.model, model.froms, model.built, strict=True)):
        params = sum(p.numel() for p in layer.parameters())
        lines.append(f"{i:>3}{str(src):>18}{n:>3}{params:>11,}  {name:<20}{args}")
    return "\n".join(lines)


def parse_layers(arch: dict) -> tuple[list[nn.Module], list, set[int], list[tuple]]:
    """YOLOv5's parse_model: the layers, each one's input (-1 the previous, an index, or a list of them), the
    indices whose outputs later layers take, and per layer (copies, module, arguments) as built."""
    where = arch.get(FILE_KEY, "model yaml")
    try:
        nc, gd, gw = int(arch["nc"]), float(arch["depth_multiple"]), float(arch["width_multiple"])
        anchors = arch["anchors"]
    except (KeyError, TypeError, ValueError) as e:
        raise FastloadError(f"{where}: needs nc, depth_multiple, width_multiple and anchors ({e})") from None
    act = activation(arch.get("activation"), where)
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else int(anchors)
    rows = arch["backbone"] + arch["head"]
    ch, layers, froms, save, built = [arch.get("ch", 3)], [], [], set(), []
    for i, row in enumerate(rows):
        try:
            src, number, name, args = row
            layer, c2, how = _layer(i, src, number, str(name), list(args), ch, nc, na, anchors, gd, gw)
        except FastloadError as e:
            raise FastloadError(f"{where}: layer {i} {row}: {e}") from None
        except Exception as e:  # a user's yaml: any mistake in a row is one line naming the row
            raise FastloadError(f"{where}: layer {i} {row}: {type(e).__name__}: {e}") from None
        layers.append(layer)
        froms.append(src)
        built.append(how)
        save.update(j % i for j in ([src] if isinstance(src, int) else src) if j != -1)
        ch = [] if i == 0 else ch
        ch.append(c2)
    if not isinstance(layers[-1], Detect):
        raise FastloadError(f"{where}: the last layer must be Detect or Segment (classification models are not built "
                            "here)")  # fmt: skip
    if act is not None:  # YOLOv5's `activation:` replaces Conv's default SiLU, wherever a Conv has the default
        for m in nn.ModuleList(layers).modules():
            if isinstance(m, Conv) and isinstance(m[2], nn.SiLU):
                m[2] = act()
    return layers, froms, save, built


def _layer(i, src, number, name, args, ch, nc, na, anchors, gd, gw) -> tuple[nn.Module, int, tuple]:
    """One row's module, its output channels, and (copies, module, arguments) as built."""
    args = [_value(a, nc, anchors) for a in args]
    module = _module(name)
    n = scaled_depth(number, gd) if number > 1 else number
    c_in = ch[src] if isinstance(src, int) else None
    if name in WIDENED:
        c2 = args[0] if args[0] == na * (nc + 5) else scaled_width(args[0], gw)
        args = [c_in, c2, *args[1:]]
        if name in REPEATED_INSIDE:
            args.insert(2, n)
            n = 1
    elif name == "nn.BatchNorm2d":
        args, c2 = [c_in], c_in
    elif name == "Concat":
        c2 = sum(ch[j] for j in src)
    elif name in ("Detect", "Segment"):
        pixels = anchors if isinstance(anchors, list) else [list(range(na * 2))] * len(src)  # `anchors: 3`: autoanchor
        pairs = [list(zip(level[::2], level[1::2], strict=True)) for level in pixels]
        channels = tuple(ch[j] for j in src)
        if name == "Detect":
            return Detect(nc, channels, pairs, (1,) * len(src)), 0, (1, name, [nc, anchors, list(channels)])
        nm, npr = int(args[2]) if len(args) > 2 else 32, scaled_width(args[3] if len(args) > 3 else 256, gw)
        built = (1, name, [nc, anchors, nm, npr, list(channels)])
        return Segment(nc, channels, pairs, (1,) * len(src), nm, npr), 0, built
    elif name == "Contract":
        c2 = c_in * args[0] ** 2
    elif name == "Expand":
        c2 = c_in // args[0] ** 2
    else:
        c2 = c_in
    layer = nn.Sequential(*(module(*args) for _ in range(n))) if n > 1 else module(*args)
    return layer, c2, (n, name, args)


def _module(name: str) -> type:
    if name == "Classify":
        raise FastloadError(f"{name}: classification models are not built here (detection and segmentation only)")
    if name.startswith("nn."):
        cls = getattr(nn, name[3:], None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return cls
    elif name in BLOCKS:
        return BLOCKS[name]
    raise FastloadError(f"unknown module {name!r} (built here: {', '.join(sorted(BLOCKS))} and torch's nn.*)")


def _value(arg, nc: int, anchors):
    """An argument as YOLOv5's eval reads it: nc, anchors and None by name; other strings ('nearest') stay."""
    return {"nc": nc, "anchors": anchors, "None": None}.get(arg, arg) if isinstance(arg, str) else arg


def activation(text: str | None, where: str):
    """A yaml's `activation: nn.LeakyReLU(0.1)` as a maker of that module (YOLOv5 evals it); None when absent."""
    if not text:
        return None
    m = re.fullmatch(r"\s*nn\.(\w+)\((.*)\)\s*", str(text))
    cls = getattr(nn, m[1], None) if m else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise FastloadError(f"{where}: activation {text!r} is not an nn module call such as nn.LeakyReLU(0.1)")
    try:
        args = ast.literal_eval(f"({m[2]},)") if m[2].strip() else ()
        cls(*args)
    except (ValueError, SyntaxError, TypeError) as e:
        raise FastloadError(f"{where}: activation {text!r}: {e}") from None
    return lambda: cls(*args)


def yolov5_names(model: nn.Module) -> dict[str, str]:
    """Each state-dict name of `model` -> YOLOv5's for the same tensor (a Conv's 0/1 are YOLOv5's conv/bn)."""
    convs = {name for name, m in model.named_modules() if isinstance(m, Conv)}
    names = {}
    for key in model.state_dict():
        parent, _, leaf = key.rpartition(".")
        owner, _, child = parent.rpartition(".")
        if owner in convs and child in ("0", "1"):
            names[key] = f"{owner}.{'conv' if child == '0' else 'bn'}.{leaf}"
        else:
            names[key] = key
    return names
