"""`--classes`: a dataset packed with some of its classes, numbered anew in the order given, or several merged into
one; objects of other classes are left out and their images kept as background images; train and val use it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import cli, cli_process

from fastload.store import open_store

DEMO = ["circle", "rectangle", "triangle"]


def label_rows(dataset: str, split: str, image: str) -> np.ndarray:
    path = os.path.join(dataset, "labels", split, os.path.splitext(os.path.basename(image))[0] + ".txt")
    return np.loadtxt(path, ndmin=2).astype(np.float32).reshape(-1, 5)


def check_selected(dataset: str, out: str, new_id: dict[int, int]) -> int:
    """Every record of `out` holds its label file's rows of the classes in `new_id`, renumbered; returns how many
    records hold none."""
    background = 0
    for split in ("train", "val"):
        store = open_store(out, split)
        for i in range(len(store)):
            rec = store.get(i)
            rows = label_rows(dataset, split, rec.path)
            rows = rows[np.isin(rows[:, 0], list(new_id))]
            rows[:, 0] = [new_id[int(c)] for c in rows[:, 0]]
            assert np.allclose(rec.boxes, rows, atol=1e-6), rec.path
            background += len(rec.boxes) == 0
    return background


def test_chosen_classes_are_numbered_anew_in_the_order_given(demo_dataset, tmp_path):
    out = str(tmp_path / "two.lmdb")
    report = cli("pack", demo_dataset, "-o", out, "--classes", "triangle,circle", "--json")
    assert report["names"] == ["triangle", "circle"] and report["pack"]["classes"] == "triangle,circle"
    background = check_selected(demo_dataset, out, {2: 0, 0: 1})
    assert background == sum(s["background"] for s in report["splits"].values())
    described = cli_process("info", out)
    assert "(data.yaml) on " in described.stderr and ", classes triangle,circle" in described.stderr, described.stderr
    by_id = cli("pack", demo_dataset, "-o", str(tmp_path / "ids.lmdb"), "--classes", "2, 0", "--json")
    assert by_id["names"] == ["triangle", "circle"] and by_id["pack"]["classes"] == "triangle,circle"


def test_classes_merge_into_one_and_every_image_stays(demo_dataset, tmp_path):
    out = str(tmp_path / "merged.lmdb")
    report = cli("pack", demo_dataset, "-o", out, "--classes", "shape=rectangle+triangle", "--json")
    assert report["names"] == ["shape"] and report["pack"]["classes"] == "shape=rectangle+triangle"
    check_selected(demo_dataset, out, {1: 0, 2: 0})
    assert sum(s["count"] for s in report["splits"].values()) == 24  # images without one of them: background


def test_polygons_follow_their_boxes(polygon_data, tmp_path):
    out = str(tmp_path / "p.lmdb")
    cli("pack", polygon_data["polygons_dir"], "-o", out, "--classes", "circle", "--json")
    store = open_store(out, "train")
    assert store.has_polygons
    for i in range(len(store)):
        rec = store.get(i)
        assert (rec.boxes[:, 0] == 0).all() and len(rec.segments or []) == len(rec.boxes)
        for box, poly in zip(rec.boxes, rec.segments or [], strict=True):  # each polygon inside its own box
            assert np.allclose(poly.min(0), box[1:3] - box[3:] / 2, atol=1e-5)


@pytest.mark.parametrize(
    "spec,words",
    [
        ("square", "no class 'square' (its classes: circle, rectangle, triangle)"),
        ("circle,circle", "'circle' chosen twice"),
        ("a=circle,a=triangle", "'a' class name twice"),
        ("9", "no class '9'"),
    ],
)
def test_a_bad_selection_is_one_line(demo_dataset, tmp_path, spec, words):
    result = cli_process("pack", demo_dataset, "-o", str(tmp_path / "x.lmdb"), "--classes", spec)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.lmdb").exists()


def test_packing_again_reuses_records_only_under_the_same_selection(demo_dataset, tmp_path):
    out = str(tmp_path / "s.lmdb")
    cli("pack", demo_dataset, "-o", out, "--classes", "circle,triangle", "--json")
    same = cli("pack", demo_dataset, "-o", out, "--classes", "circle,triangle", "--json")
    assert same["pack"]["reused"]["records"] == 24
    other = cli("pack", demo_dataset, "-o", out, "--classes", "rectangle", "--json")
    assert "reused" not in other["pack"] or other["pack"]["reused"]["records"] == 0
    check_selected(demo_dataset, out, {1: 0})


def test_train_and_val_on_chosen_classes(demo_dataset, tmp_path):
    common = ("--imgsz", "64", "--batch", "4", "--epochs", "1", "--device", "cpu", "--workers", "1", "--noplots")
    project = str(tmp_path / "runs" / "train")
    run = cli("train", "--data", demo_dataset, "--classes", "rectangle", *common, "--project", project, "--json")
    val = cli("val", "--weights", run["weights"], "--imgsz", "64", "--device", "cpu", "--json")
    assert val["images"] == run["val_images"] == 5 and {c["name"] for c in val["classes"]} <= {"all", "rectangle"}
    store = [os.path.join(project, "..", "stores", f) for f in os.listdir(os.path.join(project, "..", "stores"))]
    result = cli_process("train", "--data", store[0], "--classes", "rectangle", *common, "--project", project)
    assert result.returncode == 2 and "--classes picks classes of a dataset as it is packed" in result.stderr


def test_the_cache_key_takes_classes_as_chosen_not_as_typed(demo_dataset, tmp_path):
    from fastload.pack.cache import ensure_store

    cache = str(tmp_path / "stores")
    a = ensure_store(demo_dataset, cache, classes="circle,shape=rectangle+triangle")[0]
    assert ensure_store(demo_dataset, cache, classes=" 0 , shape = 1+triangle")[0] == a  # by id, spaced
