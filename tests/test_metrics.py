"""mAP against pycocotools on the same predictions; NMS semantics."""

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolo.metrics import evaluate, non_max_suppression


def synthetic(seed: int, images: int = 30, nc: int = 4):
    """Ground truth and noisy predictions (jittered true boxes, misclassifications, false positives)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(images):
        m = int(rng.integers(1, 8))
        xy = rng.uniform(0, 500, (m, 2))
        wh = rng.uniform(10, 150, (m, 2))
        gt = np.concatenate([rng.integers(0, nc, (m, 1)), xy, xy + wh], 1)
        det = gt[:, 1:].copy() + rng.normal(0, 1, (m, 4)) * wh.repeat(2, 1) * rng.uniform(0.02, 0.3, (m, 1))
        cls = np.where(rng.random(m) < 0.85, gt[:, 0], rng.integers(0, nc, m))
        k = int(rng.integers(0, 6))
        fxy = rng.uniform(0, 500, (k, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(10, 150, (k, 2))], 1)
        boxes = np.concatenate([det, false])
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        pred = np.concatenate(
            [boxes, rng.uniform(0.01, 1, (len(boxes), 1)), np.concatenate([cls, rng.integers(0, nc, k)])[:, None]], 1
        )
        gts.append(gt)
        preds.append(pred[np.argsort(-pred[:, 4])][:100])
    return preds, gts


def pycocotools_map(preds, gts) -> tuple[float, float]:
    images, anns, dets = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        images.append({"id": i, "width": 700, "height": 700})
        for c, x1, y1, x2, y2 in g:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
        for x1, y1, x2, y2, conf, c in p:
            dets.append({"image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(4)]}
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(dets), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats[1], e.stats[0]  # mAP@0.5, mAP@0.5:0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_pycocotools(seed):
    preds, gts = synthetic(seed)
    ours = evaluate(preds, gts)
    map50, map50_95 = pycocotools_map(preds, gts)
    assert 0.1 < map50 < 0.99  # a non-trivial case
    assert abs(ours["map50"] - map50) < 0.002 and abs(ours["map50_95"] - map50_95) < 0.002


def test_nms_multi_label_thresholds_and_cap():
    pred = torch.zeros(1, 4, 5 + 2)
    pred[0, :, :4] = torch.tensor([[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 30, 30], [300, 300, 10, 10]])
    pred[0, :, 4] = torch.tensor([0.9, 0.8, 0.9, 0.0005])  # the last is below the confidence threshold
    pred[0, :, 5:] = torch.tensor([[0.9, 0.5], [0.9, 0.1], [0.2, 0.9], [1.0, 1.0]])
    (out,) = non_max_suppression(pred)
    kept = {(round(x1.item()), int(c.item())) for x1, _, _, _, _, c in out}
    assert kept == {(40, 0), (40, 1), (185, 0), (185, 1)}  # box 2 suppressed by box 1 (same class); multi-label
    assert torch.allclose(out[:, 4].max(), torch.tensor(0.81))
    (capped,) = non_max_suppression(pred, max_det=2)
    assert len(capped) == 2
