"""Write tests/data/yolov5n-3cls.pt, a real ultralytics/yolov5 checkpoint (YOLOv5n, 3 classes, random weights and
BatchNorm statistics, saved as YOLOv5's train.py strips a finished run: float16 `model`, no EMA, optimizer or
epoch), pickled under the module names of YOLOv5's release weights (`models.yolo`, `models.common`), and
tests/data/yolov5n-3cls-output.pt: an input and YOLOv5's own decoded output for it. The same for its P6 model
YOLOv5n6 (yolov5n6-3cls*.pt), its segmentation model YOLOv5n-seg (yolov5n-seg-3cls*.pt: the decoded output and the
mask prototypes), its classification model YOLOv5n-cls (yolov5n-cls-3cls*.pt: the logits, as classify/train.py
saves it), and for a model yaml (tests/data/yolov5-blocks.yaml: YOLOv5's other blocks). The tests read the
checkpoints without YOLOv5's code and check that fastload's model gives the same output. `--hub` writes
tests/data/yolov5-hub.json: each model yaml YOLOv5 ships (its segmentation models' as segment/<name>), with the
parameter count and strides YOLOv5 builds from it. Needs `pip install 'fastload[compare]'`.

    python tools/make_yolov5_fixture.py                      # both files of yolov5n
    python tools/make_yolov5_fixture.py yolov5n6             # both files of yolov5n6
    python tools/make_yolov5_fixture.py yolov5n-seg          # both files of yolov5n-seg
    python tools/make_yolov5_fixture.py yolov5n-cls          # both files of yolov5n-cls (classify/train.py's)
    python tools/make_yolov5_fixture.py yolov5n --outputs    # only the outputs, from the committed checkpoint
    python tools/make_yolov5_fixture.py tests/data/yolov5-blocks.yaml   # yolov5-blocks-3cls.pt and its outputs
    python tools/make_yolov5_fixture.py --hub                # yolov5-hub.json
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
import sys

import torch
import yaml
import yolov5.models
import yolov5.models.common
import yolov5.models.yolo
from yolov5.models.yolo import ClassificationModel, DetectionModel, SegmentationModel

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data")
NAMES = ["circle", "rectangle", "triangle"]


def release_module_names() -> None:
    """Pickle YOLOv5's classes as its GitHub release weights name them (the PyPI package says `yolov5.models`)."""
    for short, module in (("models", yolov5.models), ("models.yolo", yolov5.models.yolo),
                          ("models.common", yolov5.models.common)):  # fmt: skip
        sys.modules[short] = module
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                value.__module__ = short


def main(name: str) -> None:
    torch.manual_seed(0)
    if name.endswith(".yaml"):  # a model yaml of ours
        cfg, name = name, os.path.basename(name).removesuffix(".yaml")
    else:
        # YOLOv5 keeps its P6 models' yamls in models/hub, its segmentation models' in models/segment
        folder = "hub" if name.endswith("6") else "segment" if name.endswith("-seg") else ""
        cfg = os.path.join(os.path.dirname(yolov5.models.__file__), folder, f"{name}.yaml")
    if name.endswith("-cls"):  # classify/train.py's: a detection model's layers 0-8 and Classify
        cfg = cfg.replace("-cls.yaml", ".yaml")
        model = ClassificationModel(model=DetectionModel(cfg, ch=3, nc=80), nc=len(NAMES), cutoff=10)
    else:
        model = (SegmentationModel if name.endswith("-seg") else DetectionModel)(cfg, ch=3, nc=len(NAMES))
    with torch.no_grad():  # trained-looking BatchNorms, so that a misplaced statistic changes the output
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    model.names = dict(enumerate(NAMES))  # as YOLOv5 v7 writes them
    model = copy.deepcopy(model).half()  # what the file holds
    release_module_names()
    ckpt = {"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None, "optimizer": None,
            "opt": {"weights": "", "cfg": f"{name}.yaml", "imgsz": 640}, "git": None, "date": None}  # fmt: skip
    os.makedirs(OUT, exist_ok=True)
    torch.save(ckpt, os.path.join(OUT, f"{name}-3cls.pt"))
    write_outputs(model, name)
    print(f"wrote {OUT}/{name}-3cls.pt")


def write_outputs(model, name: str) -> None:
    """YOLOv5's decoded output for a fixed input, plainly and with its test-time augmentation (`augment=True`); of a
    segmentation model, the decoded output and the prototypes."""
    reference = copy.deepcopy(model).float().eval()
    shape = (128, 192) if reference.stride.max() == 64 else (96, 128)  # multiples of a P6 / P5 model's stride
    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(1))
    if name.endswith("-cls"):
        with torch.no_grad():
            y = reference(x)
        torch.save({"input": x, "output": y}, os.path.join(OUT, f"{name}-3cls-output.pt"))
        print(f"wrote {OUT}/{name}-3cls-output.pt: logits {tuple(y.shape)}")
        return
    if name.endswith("-seg"):
        with torch.no_grad():
            y, proto = reference(x)[:2]
        torch.save({"input": x, "output": y, "proto": proto}, os.path.join(OUT, f"{name}-3cls-output.pt"))
        print(f"wrote {OUT}/{name}-3cls-output.pt: outputs {tuple(y.shape)}, prototypes {tuple(proto.shape)}")
        return
    with torch.no_grad():
        y, augmented = reference(x)[0], reference(x, augment=True)[0]
    torch.save({"input": x, "output": y, "augment": augmented}, os.path.join(OUT, f"{name}-3cls-output.pt"))
    print(f"wrote {OUT}/{name}-3cls-output.pt: outputs {tuple(y.shape)}, augmented {tuple(augmented.shape)}")


def write_hub() -> None:
    """Each model yaml of YOLOv5's models/ and models/hub, with what YOLOv5 builds from it at nc=80."""
    logging.disable(logging.INFO)  # its layer table for each model
    found = {}
    root = os.path.dirname(yolov5.models.__file__)
    for path in sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)):
        with open(path) as f:
            arch = yaml.safe_load(f)
        if not isinstance(arch, dict) or "backbone" not in arch:
            continue  # anchors.yaml
        segment = os.path.basename(os.path.dirname(path)) == "segment"
        model = (SegmentationModel if segment else DetectionModel)(path, ch=3, nc=80)
        yolov5.models.common.Conv.default_act = torch.nn.SiLU()  # yolov5s-LeakyReLU.yaml replaced it for all
        params = sum(p.numel() for p in model.parameters())
        key = f"segment/{os.path.basename(path)}" if segment else os.path.basename(path)
        found[key] = {"yaml": arch, "params": params, "strides": model.stride.int().tolist()}
    with open(os.path.join(OUT, "yolov5-hub.json"), "w") as f:
        json.dump(found, f, indent=1)
    print(f"wrote {OUT}/yolov5-hub.json: {len(found)} models")


if __name__ == "__main__":
    arg = next((a for a in sys.argv[1:] if not a.startswith("-")), "yolov5n")
    if "--hub" in sys.argv:
        write_hub()
    elif "--outputs" in sys.argv:  # the committed checkpoint's outputs again, the checkpoint's bytes kept
        release_module_names()
        write_outputs(torch.load(os.path.join(OUT, f"{arg}-3cls.pt"), weights_only=False)["model"], arg)
    else:
        main(arg)
