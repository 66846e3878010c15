"""A run's log: results.csv rows, results.png, and the same values as TensorBoard scalars; a run begun by an older
fastload (fewer columns) resumes into today's columns with its rows kept."""

import csv

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from yolo.runlog import COLUMNS, TAGS, RunLog, plot_labels


def values(epoch: int) -> dict:
    return {c: (epoch if c == "epoch" else 0.125 * (k + 1) + epoch) for k, c in enumerate(COLUMNS)}


def read(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_csv_plot_and_tensorboard_hold_the_same_values(tmp_path):
    log = RunLog(str(tmp_path), resumed=False)
    for epoch in range(3):
        log.epoch(values(epoch))
    log.close()
    rows = read(tmp_path / "results.csv")
    assert list(rows[0]) == COLUMNS
    assert [float(r["val_obj_loss"]) for r in rows] == [values(e)["val_obj_loss"] for e in range(3)]
    assert (tmp_path / "results.png").stat().st_size > 10_000
    board = EventAccumulator(str(tmp_path)).Reload()
    for column, tag in TAGS.items():
        assert [(e.step, e.value) for e in board.Scalars(tag)] == [
            (e, pytest.approx(values(e)[column])) for e in range(3)
        ], tag
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    RunLog(str(quiet), resumed=False, tensorboard=False, plot=False).epoch(values(0))
    assert sorted(p.name for p in quiet.iterdir()) == ["results.csv"]


def test_an_older_runs_csv_resumes_in_todays_columns(tmp_path):
    old = [c for c in COLUMNS if not c.startswith("val_") or c == "val_s"]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([old, *([values(e)[c] for c in old] for e in range(2))])
    log = RunLog(str(tmp_path), resumed=True, tensorboard=False)
    log.epoch(values(2))
    rows = read(tmp_path / "results.csv")
    assert list(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["map50"] == str(values(1)["map50"]) and rows[1]["val_box_loss"] == "0"  # kept; none then
    assert float(rows[2]["val_box_loss"]) == values(2)["val_box_loss"]


def test_labels_jpg_shows_the_class_counts_and_the_boxes(tmp_path):
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.integers(0, 3, (500, 1)), rng.random((500, 4)) * 0.5 + 0.25], 1).astype(np.float32)
    plot_labels(boxes, ["a", "b", "c"], str(tmp_path / "labels.jpg"))
    plot_labels(boxes[:0], ["a", "b", "c"], str(tmp_path / "none.jpg"))  # a split without boxes still draws
    with Image.open(tmp_path / "labels.jpg") as full, Image.open(tmp_path / "none.jpg") as empty:
        assert full.size == empty.size == (1300, 400)
        assert np.abs(np.asarray(full, np.int32) - np.asarray(empty, np.int32)).mean() > 1  # the boxes show
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jpg", "none.jpg"]
