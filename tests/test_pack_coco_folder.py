"""A folder whose labels are COCO JSONs, one per split, packs into one store with every split: COCO's layout,
CVAT's and Roboflow's exports, and an archive of one; it trains; its cache key covers the JSONs; a JSON that does
not read is skipped and named."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import cli, write

from fastload.pack import PackOptions, pack
from fastload.pack.cache import ensure_store
from fastload.store import open_store, read_meta
from tools.yolo_to_coco import yolo_to_coco

NAMES = ["circle", "rectangle", "triangle"]


def by_image(store: str, split: str) -> dict:
    s = open_store(store, split)
    return {bytes(s.image(i)): s.get(i) for i in range(len(s))}


def coco_layout(demo_dataset, root, kind: str) -> str:
    """The demo dataset with its labels as COCO JSONs, in the layout of `kind`: coco, cvat or roboflow."""
    root = str(root / kind)
    for split in ("train", "val"):
        data = yolo_to_coco(demo_dataset, split, NAMES)
        if kind == "coco":  # annotations/instances_train2017.json, images/train2017/
            images = os.path.join(root, "images", f"{split}2017")
            label = os.path.join(root, "annotations", f"instances_{split}2017.json")
        elif kind == "roboflow":  # train/_annotations.coco.json beside the images; val is `valid`
            images = os.path.join(root, {"train": "train", "val": "valid"}[split])
            label = os.path.join(images, "_annotations.coco.json")
        elif kind == "label-studio":  # one result.json, file_names images/x.jpg: every image in train
            if split == "val":
                continue
            images = os.path.join(root, "images")
            for im in data["images"]:
                im["file_name"] = f"images/{im['file_name']}"
            label = os.path.join(root, "result.json")
        else:  # cvat: file_names relative to images/, as `<split>/x.jpg`
            images = os.path.join(root, "images", split)
            for im in data["images"]:
                im["file_name"] = f"{split}/{im['file_name']}"
            label = os.path.join(root, "annotations", f"instances_{split}.json")
        shutil.copytree(os.path.join(demo_dataset, "images", split), images)
        write(label, json.dumps(data))
    return root


@pytest.mark.parametrize("kind", ["coco", "cvat", "roboflow", "label-studio"])
def test_a_coco_folder_packs_every_split_with_the_yolo_labels(demo_dataset, demo_store, tmp_path, kind):
    root = coco_layout(demo_dataset, tmp_path, kind)
    meta = cli("pack", root, "-o", str(tmp_path / "s.lmdb"), "--json")
    assert meta["pack"]["source_kind"] == "coco" and meta["names"] == NAMES and meta["skipped"] == []
    splits = {"train": 19} if kind == "label-studio" else {"train": 19, "val": 5}
    assert {k: v["count"] for k, v in meta["splits"].items()} == splits
    for split in splits:
        want, got = by_image(demo_store, split), by_image(str(tmp_path / "s.lmdb"), split)
        assert want.keys() == got.keys()
        for image, rec in want.items():  # the JSON's pixel boxes give back the YOLO labels
            assert np.allclose(rec.boxes, got[image].boxes, atol=2e-6)
    path = open_store(str(tmp_path / "s.lmdb"), list(splits)[-1]).path_of(0)
    want = {"coco": "images/val2017/", "cvat": "images/val/", "roboflow": "valid/", "label-studio": "images/0"}
    assert path.startswith(want[kind])


def test_coco_folder_in_a_zip_trains_and_its_key_covers_the_jsons(demo_dataset, tmp_path):
    root = coco_layout(demo_dataset, tmp_path, "roboflow")
    cache = str(tmp_path / "stores")
    first = ensure_store(root, cache)[0]
    label = os.path.join(root, "valid", "_annotations.coco.json")
    data = json.load(open(label))
    data["annotations"] = data["annotations"][1:]  # one object fewer
    write(label, json.dumps(data))
    second = ensure_store(root, cache)[0]
    assert second != first and len(open_store(second, "val").boxes) == len(open_store(first, "val").boxes) - 1

    shutil.make_archive(str(tmp_path / "export"), "zip", root)
    result = cli("train", "--data", str(tmp_path / "export.zip"), "--epochs", "1", "--imgsz", "64", "--batch", "8",
                 "--workers", "1", "--project", str(tmp_path / "runs"), "--noplots", "--json")  # fmt: skip
    assert result["epochs"] == 1 and np.isfinite(result["map50"])


def test_a_json_that_does_not_read_is_skipped_and_mismatched_categories_refused(demo_dataset, tmp_path):
    root = coco_layout(demo_dataset, tmp_path, "coco")
    bad = os.path.join(root, "annotations", "instances_val2017.json")
    write(bad, "{not json")
    write(os.path.join(root, "annotations", "captions_val2017.json"), "{}")  # COCO's captions: not labels
    meta = pack(root, str(tmp_path / "s.lmdb"), PackOptions())
    assert list(meta["splits"]) == ["train"] and len(meta["skipped"]) == 1
    assert meta["skipped"][0]["path"] == "annotations/instances_val2017.json"
    reason = meta["skipped"][0]["reason"]
    assert reason.startswith("not read: ") and "not a COCO instances JSON" in reason

    data = yolo_to_coco(demo_dataset, "val", ["ball", "box", "cone"])
    write(bad, json.dumps(data))
    from conftest import cli_process

    got = cli_process("pack", root, "-o", str(tmp_path / "t.lmdb"))
    assert got.returncode == 2 and "instances_val2017.json: its categories (ball, box, cone, ...)" in got.stderr
    assert read_meta(str(tmp_path / "s.lmdb"))[1]["names"] == NAMES


def test_val_on_a_coco_folder_scores_with_pycocotools_too(demo_dataset, tmp_path):
    root = coco_layout(demo_dataset, tmp_path, "coco")
    runs = str(tmp_path / "runs")
    cli("train", "--data", root, "--epochs", "1", "--imgsz", "64", "--batch", "8", "--workers", "1",
        "--project", runs, "--noplots")  # fmt: skip
    result = cli("val", "--weights", os.path.join(runs, "exp", "weights", "last.pt"), "--imgsz", "64", "--json")
    assert set(result["pycocotools"]) == {"map50", "map50_95"}  # by the val split's JSON, found in the folder
    assert abs(result["pycocotools"]["map50"] - result["map50"]) <= 0.01
