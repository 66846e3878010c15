"""Autoanchor: YOLOv5's best possible recall, kept anchors when they fit, k-means + evolution when they do not."""

import numpy as np
import torch

from fastload.pack import PackOptions, pack
from fastload.store import open_store
from yolo.autoanchor import check_anchors, fitness
from yolo.model import YOLOv5


def test_bpr_counts_boxes_within_4x_of_some_anchor():
    anchors = np.array([[10.0, 13.0]])
    wh = np.array([[10.0, 13.0], [50.0, 13.0], [39.0, 13.0], [10.0, 60.0]])  # 1x; 5x wide; 3.9x wide; 4.6x tall
    bpr, _ = fitness(anchors, wh)
    assert bpr == 0.5


def test_coco_anchors_are_kept_on_the_demo_dataset(demo_dataset, tmp_path):
    path = str(tmp_path / "demo.lmdb")
    pack(demo_dataset, path, PackOptions())
    store = open_store(path, "train")
    model = YOLOv5("n", nc=3)
    before = model.detect.anchors.clone()
    report = check_anchors(model.detect, store.sizes, store.labels, 640)
    assert report["bpr"] >= 0.98 and not report["changed"] and torch.equal(before, model.detect.anchors)


def test_anchors_are_refitted_when_boxes_are_unlike_them():
    rng = np.random.default_rng(0)
    sizes = np.full((200, 2), (480, 640))
    rows = [np.c_[np.zeros(5), rng.random((5, 2)), rng.uniform(0.6, 0.9, 5), rng.uniform(0.01, 0.02, 5)] for _ in sizes]
    model = YOLOv5("n", nc=1)
    report = check_anchors(model.detect, sizes, lambda i: rows[i], 640)
    assert report["bpr"] < 0.5 and report["changed"] and report["bpr_after"] > 0.98
    pixels = (model.detect.anchors * model.detect.stride.view(-1, 1, 1)).view(-1, 2).numpy()
    assert np.allclose(pixels, np.array(report["anchors"]), atol=0.06)  # stored in grid units per level
    assert (np.diff(pixels.prod(1)) >= 0).all()  # small to large, P3 to P5
