"""`fastload train --evolve N`: YOLOv5's hyperparameter evolution. Generation 0 trains the given hyperparameters;
each later one a mutation of an earlier one within YOLOv5's limits; evolve.csv has every generation, and
hyp_evolve.yaml the best one's hyperparameters, which --hyp reads."""

import csv

from conftest import cli

from yolo.evolve import META
from yolo.hyp import ORDER, SCRATCH_LOW, read_hyp


def test_three_generations_evolve_within_yolov5s_limits(demo_store, tmp_path):
    hyp = tmp_path / "start.yaml"
    hyp.write_text("lr0: 0.02\nmosaic: 0.5\n")
    got = cli("train", "--data", demo_store, "--hyp", str(hyp), "--evolve", "3", "--epochs", "1", "--imgsz", "64",
              "--batch", "8", "--workers", "1", "--project", str(tmp_path / "evolve"), "--json")  # fmt: skip
    with open(got["csv"]) as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert len(rows) == got["generations"] == 3 and got["out"] == str(tmp_path / "evolve" / "exp")
    assert {k: rows[0][k] for k in ORDER} == {**SCRATCH_LOW, "lr0": 0.02, "mosaic": 0.5}  # generation 0: as given
    for row in rows[1:]:
        assert all(META[k][1] <= row[k] <= META[k][2] for k in ORDER), row
        assert all(row[k] == rows[0][k] for k in ORDER if META[k][0] == 0)  # YOLOv5 keeps these
        assert any(row[k] != r[k] for r in rows[: rows.index(row)] for k in ORDER)  # a new point
    first = rows[1]  # its only possible parent is generation 0: each key times a factor in [0.3, 3], or a limit
    for k in ORDER:
        if rows[0][k] > 0 and first[k] not in META[k][1:]:
            assert 0.3 - 1e-4 <= first[k] / rows[0][k] <= 3 + 1e-4, (k, rows[0][k], first[k])
    best = max(rows, key=lambda r: r["fitness"])
    assert rows.index(best) == got["best_generation"]
    assert all(abs(r["fitness"] - (0.1 * r["map50"] + 0.9 * r["map50_95"])) < 1e-9 for r in rows)
    assert read_hyp(got["hyp"]) == {k: best[k] for k in ORDER}  # what --hyp takes back
