"""YOLOv5's classification models (yolov5n-cls .. yolov5x-cls, its `ClassificationModel`): a YOLOv5 detection
model's first ten layers (the backbone up to SPPF) with the last, SPPF, replaced by Classify (a 1x1 conv to 1280
channels, global average pooling, dropout, a linear layer to the classes). Checkpoints of YOLOv5's classify/train.py
read into it tensor for tensor. torchvision's classification models by name (resnet18, ...), as YOLOv5 takes them.

    model = Classifier("s-cls", nc=1000)  # 5,453,480 parameters: YOLOv5's yolov5s-cls
    logits = model(normalize(images))     # N x nc
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from yolo.model import SIZES, Conv, YOLOv5

CLASSIFY_MODELS = tuple(f"{size}-cls" for size in SIZES)  # n-cls .. x-cls
HIDDEN = 1280  # Classify's width (efficientnet_b0's, as YOLOv5)
# YOLOv5's layer index of its classification models -> this model's module
LAYERS_CLS = {0: "b0", 1: "b1.0", 2: "b1.1", 3: "b2.0", 4: "b2.1", 5: "b3.0", 6: "b3.1", 7: "b4.0", 8: "b4.1",
              9: "head"}  # fmt: skip


@functools.cache
def torchvision_models() -> tuple[str, ...]:
    """torchvision's classification models by name (resnet18, efficientnet_b0, ...: YOLOv5's classify/train.py
    takes them as --model too)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def classify_arch(arch) -> bool:
    """Whether a model name is a classification model's: n-cls .. x-cls, or a torchvision model's."""
    return isinstance(arch, str) and (arch.endswith("-cls") or arch in torchvision_models())


def classifier(arch: str, nc: int, dropout: float = 0.0) -> nn.Module:
    """The classification model of `arch` with `nc` outputs: YOLOv5's n-cls .. x-cls, or a torchvision model built
    from scratch (its dropouts set to `dropout` when given, as YOLOv5's --dropout), with `arch`, `nc`, `grid_size`
    and `layer_names` as the YOLOv5 models have them."""
    if arch.endswith("-cls"):
        return Classifier(arch, nc, dropout)
    import torchvision

    model = torchvision.models.get_model(arch, weights=None, num_classes=nc)
    for m in model.modules():
        if isinstance(m, nn.Dropout) and dropout:
            m.p = dropout
    names = {i: name for i, (name, _) in enumerate(model.named_children())}
    model.arch, model.nc, model.grid_size, model.layer_names = arch, nc, 32, lambda: names
    return model


class Classify(nn.Module):
    """YOLOv5's Classify head: x (N, c1, h, w) -> logits (N, nc)."""

    def __init__(self, c1: int, nc: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = Conv(c1, HIDDEN, 1)
        self.conv[1].eps, self.conv[1].momentum = 1e-5, 0.1  # made after YOLOv5's initialize_weights: torch's BN
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=dropout, inplace=True)
        self.linear = nn.Linear(HIDDEN, nc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))


class Classifier(nn.Module):
    """The backbone stages of YOLOv5(size) (`b0` .. `b4` without SPPF) and `head`, a Classify."""

    def __init__(self, arch: str = "s-cls", nc: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        size = arch.removesuffix("-cls")
        if size not in SIZES:
            raise ValueError(f"classification model must be one of {', '.join(CLASSIFY_MODELS)}, not {arch!r}")
        detector = YOLOv5(size, nc=1)
        self.b0, self.b1, self.b2, self.b3 = detector.b0, detector.b1, detector.b2, detector.b3
        self.b4 = detector.b4[:2]  # YOLOv5's cutoff 10: SPPF (layer 9) becomes the head
        self.head = Classify(detector.b4[2].cv1[0].in_channels, nc, dropout)
        self.size, self.nc = size, nc

    @property
    def arch(self) -> str:
        return f"{self.size}-cls"

    @property
    def grid_size(self) -> int:
        return 32

    def layer_names(self) -> dict[int, str]:
        return LAYERS_CLS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b4(self.b3(self.b2(self.b1(self.b0(x))))))

    def fuse(self) -> Classifier:
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self


def yolov5_classifier_state(theirs: dict[str, torch.Tensor]) -> tuple[str, int, dict[str, torch.Tensor]] | None:
    """(arch, nc, state in this model's names) of a YOLOv5 classification checkpoint's state dict (its keys
    `model.0.conv.weight` .. `model.9.linear.bias`); None when it is not one of n-cls .. x-cls."""
    from yolo.weights import rename

    if "model.9.linear.weight" not in theirs:
        return None
    try:
        state = {rename(k, LAYERS_CLS).replace("head.0.", "head.conv."): v.float() for k, v in theirs.items()}
    except (KeyError, ValueError):
        return None
    nc = state["head.linear.weight"].shape[0]
    for arch in CLASSIFY_MODELS:
        ours = Classifier(arch, nc).state_dict()
        if ours.keys() == state.keys() and all(ours[k].shape == state[k].shape for k in ours):
            return arch, nc, state
    return None


def refuse_for_classifier(name: str, w, **options) -> None:
    """A FastloadError for an ensemble of classifiers or an option given (not None) that scores or draws boxes."""
    from fastload.errors import FastloadError

    if getattr(w, "source", "") == "ensemble":
        raise FastloadError(f"{name}: classification models ensemble not here; give one")
    for option, value in options.items():
        if value is not None and value is not False:
            flag = "--" + option.replace("_", "-")
            raise FastloadError(f"{name}: a classification model: {flag} is for detection models")
