"""Model-yaml parity with YOLOv5: each model yaml that ultralytics/yolov5 (PyPI `yolov5`) ships is built by YOLOv5's
DetectionModel and by fastload's YamlModel; YOLOv5's tensors go into fastload's model by their names, and both run
on the same random image in eval mode. Prints one JSON object: per yaml the parameter counts, the strides and the
largest difference of the decoded outputs. Needs `pip install 'fastload[compare]'`.

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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from yolo.yaml_model import YamlModel, read_model_yaml, yolov5_names  # noqa: E402


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
    return {
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
    print(json.dumps({"models": len(results), "same_params_and_strides": same, "max_abs_diff": worst,
                      "yolov5": yolov5.__version__, "torch": torch.__version__, "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
