"""Model-yaml parity with YOLOv5: each model yaml that ultralytics/yolov5 (PyPI `yolov5`) ships is built by YOLOv5's
DetectionModel and by fastload's YamlModel; YOLOv5's tensors go into fastload's model by their names, and both run
on the same random image in eval mode; then, in train mode, each model's loss (YOLOv5's ComputeLoss, fastload's)
on the same batch and targets and its gradients. Prints one JSON object: per yaml the parameter counts, the
strides, the largest difference of the decoded outputs, the losses' difference, and the largest relative
difference of a parameter's gradient (over those whose gradient is not ~0: a bias followed by a BatchNorm has an
exactly zero gradient, left as rounding noise). Needs `pip install 'fastload[compare]'`.

    python benchmarks/model_yaml_yolov5.py              # every yaml of yolov5/models and yolov5/models/hub
    python benchmarks/model_yaml_yolov5.py --only p2    # those whose file name has `p2`
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import logging
import os
import sys

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from yolo.loss import ComputeLoss  # noqa: E402
from yolo.yaml_model import YamlModel, read_model_yaml, yolov5_names  # noqa: E402

NOT_ZERO = 1e-5  # gradients with a smaller norm are compared as noise (BatchNorm's invariance makes some exactly 0)


def training_step(ours, theirs, side: int) -> dict:
    """Both models in train mode on one batch with targets: the losses, and how far fastload's parameter gradients
    are from YOLOv5's (relative, by YOLOv5's parameter names)."""
    import yolov5
    from yolov5.utils.loss import ComputeLoss as YOLOv5Loss

    nc, nl = ours.nc, len(ours.detect.m)
    with open(os.path.join(os.path.dirname(yolov5.__file__), "data", "hyps", "hyp.scratch-low.yaml")) as f:
        hyp = yaml.safe_load(f)  # scaled as YOLOv5's train.py scales it; fastload's loss scales its own
    hyp.update(box=hyp["box"] * 3 / nl, cls=hyp["cls"] * nc / 80 * 3 / nl, label_smoothing=0.0,
               obj=hyp["obj"] * (side / 640) ** 2 * 3 / nl)  # fmt: skip
    theirs.hyp = hyp
    if isinstance(ours.yaml.get("anchors"), int):  # YOLOv5's `anchors: 3` placeholders match no box: P3's anchors
        grid = torch.tensor([[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]]).expand_as(ours.detect.anchors)  # on all
        ours.detect.anchors.copy_(grid), theirs.model[-1].anchors.copy_(grid)
    ours.train(), theirs.train()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, side, side, generator=g)
    k = torch.arange(24)[:, None]  # 24 boxes over the 4 images: image, class, cx cy, w h
    where, size = 0.15 + 0.7 * torch.rand(24, 2, generator=g), 0.02 + 0.3 * torch.rand(24, 2, generator=g)
    targets = torch.cat([k % 4, k % nc, where, size], 1)
    a, _ = ComputeLoss(ours.detect, side)(ours(x), targets.float())
    b, _ = YOLOv5Loss(theirs)(theirs(x), targets.float())
    a.backward(), b.backward()
    mine, yours = dict(ours.named_parameters()), dict(theirs.named_parameters())
    rel = [
        float((mine[k].grad - yours[n].grad).norm() / yours[n].grad.norm())
        for k, n in yolov5_names(ours).items()
        if k in mine and yours[n].grad is not None and yours[n].grad.norm() > NOT_ZERO
    ]
    return {"loss": float(a), "loss_yolov5": float(b), "gradients_compared": len(rel), "grad_max_rel_diff": max(rel)}


def compare(path: str, common, DetectionModel) -> dict:
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = DetectionModel(path, ch=3, nc=80).eval()
    common.Conv.default_act = torch.nn.SiLU()  # a yaml's `activation:` replaces it for every later model in YOLOv5
    ours = YamlModel(read_model_yaml(path), nc=80).eval()
    state, their_state = ours.state_dict(), theirs.state_dict()
    for key, name in yolov5_names(ours).items():
        if name in their_state:
            state[key] = their_state[name]
    ours.load_state_dict(state)
    side = 128 if max(theirs.stride) <= 64 else 256  # two cells of the coarsest level at least
    x = torch.rand(1, 3, side, side * 3 // 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x)[0], theirs(x)[0]
    step = training_step(ours, theirs, side * 2)
    return {
        **step,
        "params": sum(p.numel() for p in ours.parameters()),
        "params_yolov5": sum(p.numel() for p in theirs.parameters()),
        "strides": ours.detect.stride.int().tolist(),
        "strides_yolov5": theirs.stride.int().tolist(),
        "max_abs_diff": float((a - b).abs().max()) if a.shape == b.shape else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="Only the yamls whose file name has this.")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # YOLOv5's layer table for each model
    import yolov5.models
    import yolov5.models.common as common
    from yolov5.models.yolo import DetectionModel

    root = os.path.dirname(yolov5.models.__file__)
    results = {}
    for path in sorted(glob.glob(os.path.join(root, "*.yaml")) + glob.glob(os.path.join(root, "hub", "*.yaml"))):
        name = os.path.basename(path)
        if args.only in name and name != "anchors.yaml":
            results[name] = compare(path, common, DetectionModel)
    same = all(r["params"] == r["params_yolov5"] and r["strides"] == r["strides_yolov5"] for r in results.values())
    worst = max(
        (r["max_abs_diff"] for r in results.values()), default=0.0, key=lambda d: float("inf") if d is None else d
    )
    grads = max(r["grad_max_rel_diff"] for r in results.values())
    losses = max(abs(r["loss"] - r["loss_yolov5"]) / r["loss_yolov5"] for r in results.values())
    print(json.dumps({"models": len(results), "same_params_and_strides": same, "max_abs_diff": worst,
                      "loss_max_rel_diff": losses, "grad_max_rel_diff": grads,
                      "yolov5": yolov5.__version__, "torch": torch.__version__, "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
