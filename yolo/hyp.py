"""YOLOv5's hyperparameter files (its data/hyps/hyp.scratch-low.yaml, -med, -high, hyp.VOC.yaml, ...) for fastload's
trainer: read and checked, then split into the optimiser's, the loss's and the augmentation's settings. Keys a file
leaves out keep hyp.scratch-low's values, as `fastload train --hyp FILE` starts from them.

    values = read_hyp("hyp.scratch-high.yaml")     # {"lr0": 0.01, ..., "mixup": 0.1, "copy_paste": 0.1}
    optim, loss, augment = split_hyp(values)       # OptimHyp, LossHyp, Hyp
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields

import yaml

from fastload.errors import FastloadError
from fastload.loader.augment import Hyp
from yolo.loss import LossHyp
from yolo.optim import OptimHyp

# YOLOv5's keys in its files' order, with hyp.scratch-low.yaml's values (the dataclasses hold them)
_ALL = {**asdict(OptimHyp()), **asdict(LossHyp()), **asdict(Hyp()), "iou_t": 0.2}
ORDER = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box", "cls",
         "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate",
         "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste")  # fmt: skip
SCRATCH_LOW = {k: _ALL[k] for k in ORDER}
# read by YOLOv5 but with no effect: iou_t (unused in YOLOv5 too)
NO_EFFECT = ("iou_t",)
ANCHORS = "anchors"  # optional: anchors per level, rounded (YOLOv5 then fits new anchors to the data); 0 = ignore


# YOLOv5's own files (its data/hyps/), by name, for a --hyp that names one and is not a file here: what each sets
# apart from hyp.scratch-low's values
_AUGMENTING = ("hsv_h", "hsv_s", "hsv_v", "translate", "scale", "fliplr", "mosaic")  # scratch-low's non-zero ones
_MEDIUM = {"lrf": 0.1, "cls": 0.3, "obj": 0.7, "scale": 0.9, "mixup": 0.1}
BUILT_IN = {
    "hyp.scratch-low.yaml": {},
    "hyp.scratch-med.yaml": _MEDIUM,
    "hyp.scratch-high.yaml": {**_MEDIUM, "copy_paste": 0.1},
    "hyp.no-augmentation.yaml": {"lrf": 0.1, "cls": 0.3, "obj": 0.7, **dict.fromkeys(_AUGMENTING, 0.0)},
}


def read_hyp(path: str) -> dict[str, float]:
    """hyp.scratch-low's values updated by the YOLOv5 hyperparameter file `path` (or, when no such file exists,
    YOLOv5's file of that name: BUILT_IN), or a FastloadError naming the file and the reason."""
    if not os.path.exists(path) and os.path.basename(path) in BUILT_IN:
        return check_hyp(BUILT_IN[os.path.basename(path)], path)
    try:
        with open(path) as f:
            given = yaml.safe_load(f)
    except FileNotFoundError:
        raise FastloadError(
            f"{path}: no such hyperparameter file (YOLOv5's are known by name: {', '.join(BUILT_IN)})"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FastloadError(f"{path}: not a YAML file ({str(e).splitlines()[0]})") from None
    if not isinstance(given, dict):
        raise FastloadError(f"{path}: not a mapping of YOLOv5 hyperparameters (such as lr0: 0.01)")
    return check_hyp(given, path)


def check_hyp(given: dict, source: str = "hyp") -> dict[str, float]:
    """hyp.scratch-low's values updated by `given` (YOLOv5 keys), checked; errors name `source`."""
    values = dict(SCRATCH_LOW)
    for key, value in given.items():
        if key not in SCRATCH_LOW and key != ANCHORS:
            raise FastloadError(f"{source}: unknown hyperparameter {key!r} (YOLOv5's are {', '.join(ORDER)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FastloadError(f"{source}: {key} must be a number, not {value!r}")
        values[key] = float(value)
    if round(values.get(ANCHORS, 0)) not in (0, 3):
        n = round(values[ANCHORS])
        raise FastloadError(f"{source}: anchors {values[ANCHORS]:g} asks for {n} anchors per level; fastload's YOLOv5 "
                            "has 3 (give 3 to fit them to the data, or leave it out)")  # fmt: skip
    try:
        split_hyp(values)[2].check()
        for key in ("lr0", "lrf", "weight_decay", "warmup_epochs", "warmup_bias_lr", "box", "cls", "obj", "fl_gamma"):
            if values[key] < 0:
                raise ValueError(f"hyp {key} must be >= 0, not {values[key]:g}")
        for key in ("cls_pw", "obj_pw", "anchor_t"):
            if values[key] <= 0:
                raise ValueError(f"hyp {key} must be > 0, not {values[key]:g}")
        for key in ("momentum", "warmup_momentum"):
            if not 0 <= values[key] < 1:
                raise ValueError(f"hyp {key} must be in [0, 1), not {values[key]:g}")
    except ValueError as e:
        raise FastloadError(f"{source}: {e}") from None
    return values


def split_hyp(
    values: dict[str, float], nominal_batch: int = 64, label_smoothing: float = 0.0
) -> tuple[OptimHyp, LossHyp, Hyp]:
    """The optimiser's, the loss's and the augmentation's dataclasses from YOLOv5's flat keys."""

    def pick(cls):
        return {f.name: values[f.name] for f in fields(cls) if f.name in values}

    return (
        OptimHyp(**pick(OptimHyp), nominal_batch=nominal_batch),
        LossHyp(**pick(LossHyp), label_smoothing=label_smoothing),
        Hyp(**pick(Hyp)),
    )


def fits_anchors(values: dict[str, float]) -> bool:
    """Whether the file asks for anchors fitted to the data (YOLOv5's `anchors: 3`) over the default ones."""
    return round(values.get(ANCHORS, 0)) == 3


def hyp_yaml(values: dict[str, float]) -> bytes:
    """The values as a YOLOv5 hyperparameter file (its keys and order): a run's hyp.yaml, read back by --hyp."""
    return yaml.safe_dump(values, sort_keys=False).encode()
