"""A Darknet dataset (CVAT's "YOLO 1.1" export: obj.data, obj.names, obj_<subset>_data/ with labels beside the
images, train.txt/valid.txt lists) packs with its names and splits and YOLOv5's boxes, also from the lists' older
`data/` paths and without the lists."""

import os
import shutil

import numpy as np
import pytest
from conftest import cli, write

from fastload.store import open_store

NAMES = ["circle", "rectangle", "triangle"]


def darknet(demo_dataset, root, lists: str) -> str:
    """The demo dataset as CVAT writes it; `lists`: "plain" (obj_train_data/x.jpg), "data" (data/obj_train_data/x.jpg,
    as older CVAT wrote), or "none" (no list files)."""
    root = str(root / "cvat")
    write(os.path.join(root, "obj.names"), "\n".join(NAMES) + "\n")
    data = "classes = 3\nnames = data/obj.names\n"
    for split, subset in (("train", "train"), ("val", "valid")):
        folder = os.path.join(root, f"obj_{subset}_data")
        shutil.copytree(os.path.join(demo_dataset, "images", split), folder)
        for f in os.listdir(os.path.join(demo_dataset, "labels", split)):
            shutil.copy(os.path.join(demo_dataset, "labels", split, f), folder)
        if lists != "none":
            prefix = "data/" if lists == "data" else ""
            lines = [f"{prefix}obj_{subset}_data/{f}" for f in sorted(os.listdir(folder)) if f.endswith(".jpg")]
            write(os.path.join(root, f"{subset}.txt"), "\n".join(lines) + "\n")
            data += f"{subset} = {prefix}{subset}.txt\n"
    write(os.path.join(root, "obj.data"), data + "backup = backup/  # weights\n")
    return root


@pytest.mark.parametrize("lists", ["plain", "data", "none"])
def test_a_cvat_yolo_export_packs_with_its_names_and_splits(demo_dataset, demo_store, tmp_path, lists):
    root = darknet(demo_dataset, tmp_path, lists)
    out = str(tmp_path / "s.lmdb")
    meta = cli("pack", root, "-o", out, "--json")
    assert meta["pack"]["source_kind"] == "darknet" and meta["names"] == NAMES and meta["skipped"] == []
    assert {k: v["count"] for k, v in meta["splits"].items()} == {"train": 19, "val": 5}
    for split in ("train", "val"):
        want = {bytes(s.image(i)): s.get(i).boxes for s in [open_store(demo_store, split)] for i in range(len(s))}
        got = open_store(out, split)
        assert got.path_of(0).startswith(f"obj_{'valid' if split == 'val' else 'train'}_data/")
        for i in range(len(got)):
            assert np.array_equal(got.get(i).boxes, want[bytes(got.image(i))])
