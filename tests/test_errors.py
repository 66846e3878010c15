"""`fastload val --errors N`: each image's correct, wrong-class, missed, false and duplicate detections at the
confusion matrix's threshold, the numbers behind the matrix per image; errors.csv worst first, the worst drawn."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from conftest import cli, cli_process
from PIL import Image

from yolo.curves import confusion_matrix
from yolo.errors import COLOURS, image_errors


def test_each_label_and_detection_is_correct_wrong_missed_false_or_a_duplicate():
    gt = np.array([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [2, 40, 40, 50, 50]], np.float64)
    pred = np.array([
        [0, 0, 10, 10, 0.9, 0],  # label 0, its class: correct
        [20, 20, 30, 31, 0.8, 0],  # label 1, another class: wrong
        [60, 60, 70, 70, 0.7, 1],  # nothing there: false
        [0, 0, 10, 9, 0.6, 0],  # label 0 again, which the first took: a duplicate
        [40, 40, 50, 50, 0.1, 2],  # label 2, under the threshold: not a detection, so label 2 is missed
    ])  # fmt: skip
    got = image_errors(pred, gt)
    assert list(got["truth"][1]) == ["correct", "wrong", "missed"]
    assert list(got["found"][1]) == ["correct", "wrong", "false", "duplicate"]
    assert got["paired"][1] == 1 and len(got["found"][0]) == 4


@pytest.mark.parametrize("seed", range(3))
def test_per_image_counts_add_up_to_the_confusion_matrix(seed):
    rng = np.random.default_rng(seed)
    nc, preds, gts = 3, [], []
    for _ in range(20):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (m, 2))
        gt = np.concatenate([rng.integers(0, nc, (m, 1)), xy, xy + rng.uniform(5, 30, (m, 2))], 1)
        near = gt[rng.integers(0, max(m, 1), int(rng.integers(0, 8)))] if m else np.zeros((0, 5))
        jitter = near[:, 1:5] + rng.normal(0, 3, (len(near), 4))
        noise = rng.uniform(0, 100, (int(rng.integers(0, 3)), 4))
        boxes = np.concatenate([jitter, np.sort(noise.reshape(-1, 2, 2), 1).reshape(-1, 4)])
        classes = np.where(rng.random(len(boxes)) < 0.6, np.concatenate([near[:, 0], rng.integers(0, nc, len(noise))]),
                           rng.integers(0, nc, len(boxes)))  # fmt: skip
        preds.append(np.concatenate([boxes, rng.uniform(0, 1, (len(boxes), 1)), classes[:, None]], 1))
        gts.append(gt)
    matrix = confusion_matrix(preds, gts, nc)
    counts = {"correct": 0, "wrong": 0, "missed": 0, "false_where_paired": 0}
    for pred, gt in zip(preds, gts, strict=True):
        got = image_errors(pred, gt)
        truth, found = got["truth"][1], got["found"][1]
        counts["correct"] += int((found == "correct").sum())
        counts["wrong"] += int((found == "wrong").sum())
        counts["missed"] += int((truth == "missed").sum())
        if (truth != "missed").any():  # YOLOv5's matrix counts false detections only where something paired
            counts["false_where_paired"] += int(np.isin(found, ("false", "duplicate")).sum())
    assert counts["correct"] == np.trace(matrix[:nc, :nc])
    assert counts["wrong"] == matrix[:nc, :nc].sum() - np.trace(matrix[:nc, :nc])
    assert counts["missed"] == matrix[nc, :nc].sum() and counts["false_where_paired"] == matrix[:nc, nc].sum()
    assert counts["correct"] > 0 and counts["wrong"] > 0 and counts["missed"] > 0  # each case met


def test_val_errors_writes_each_images_mistakes_worst_first_and_draws_the_worst(overfit, tmp_path):
    got = cli("val", "--weights", overfit["weights"], "--errors", "2", "--project", str(tmp_path), "--json")
    errors = got["errors"]
    with open(errors["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == got["images"] == errors["images"] == 16
    worst = [int(r["errors"]) for r in rows]
    assert worst == sorted(worst, reverse=True) and worst[0] > 0  # (at conf 0.25 the overfit model is not perfect)
    for r in rows:
        assert int(r["errors"]) == int(r["wrong_class"]) + int(r["missed"]) + int(r["false"])
        assert int(r["correct"]) + int(r["wrong_class"]) + int(r["missed"]) == int(r["objects"])
        assert int(r["correct"]) + int(r["wrong_class"]) + int(r["false"]) == int(r["detections"])
        lone = int(r["false"]) - int(r["duplicates"])  # false detections over no label of their class
        assert (r["top_false_conf"] == "") == (lone == 0) and (not lone or 0.25 < float(r["top_false_conf"]) <= 1)
    for key in ("correct", "wrong_class", "missed", "false", "duplicates"):
        assert errors[key] == sum(int(r[key]) for r in rows)
    assert errors["correct"] >= 0.9 * errors["objects"]  # mAP@0.5 ~1: nearly every object found
    assert len(errors["drawn"]) == 2 and errors["worst"][0]["image"] == rows[0]["image"]
    drawn = np.asarray(Image.open(errors["drawn"][0]).convert("RGB")).reshape(-1, 3).astype(int)
    red = np.abs(drawn - COLOURS["false"]).sum(1) < 60  # the worst image's false detections in red
    assert int(rows[0]["false"]) == 0 or red.sum() > 20
    strict = cli("val", "--weights", overfit["weights"], "--errors", "0", "--errors-conf", "0.8", "--project",
                 str(tmp_path), "--json")["errors"]  # fmt: skip
    assert strict["conf"] == 0.8 and strict["drawn"] == [] and strict["false"] < errors["false"]
    assert strict["correct"] + strict["wrong_class"] + strict["missed"] == errors["objects"]
    hybrid = cli_process("val", "--weights", overfit["weights"], "--errors", "1", "--save-hybrid", "--project",
                         str(tmp_path / "h"))  # fmt: skip
    assert hybrid.returncode == 2 and "--errors scores the model's detections" in hybrid.stderr
    assert not os.path.exists(tmp_path / "h")
