"""A LabelMe folder (a JSON beside each image) packs as labelme2yolo converts it: rectangles to boxes, polygons to
polygon labels with their boxes, circles to polygons; names from labels.txt or the JSONs; bad shapes skip their
image with a line; a folder with YOLO labels stays YOLO."""

import json
import os
import shutil

import numpy as np
from conftest import cli, jpeg_bytes, write
from PIL import Image

from fastload.store import open_store, read_meta


def labelme_folder(dataset: str, root, names: list[str]) -> str:
    """`dataset`'s train and val images in train/ and val/, each with a LabelMe JSON of its YOLO labels: box rows
    as rectangles, polygon rows as polygons, in pixels."""
    out = str(root / "labelme")
    for split in ("train", "val"):
        shutil.copytree(os.path.join(dataset, "images", split), os.path.join(out, split))
        for f in sorted(os.listdir(os.path.join(out, split))):
            w, h = Image.open(os.path.join(out, split, f)).size
            label = os.path.join(dataset, "labels", split, os.path.splitext(f)[0] + ".txt")
            shapes = []
            for line in open(label).read().split("\n"):
                v = [float(x) for x in line.split()]
                if not v:
                    continue
                pts = np.array(v[1:]).reshape(-1, 2) * (w, h)
                if len(pts) == 2:
                    (cx, cy), (bw, bh) = pts
                    shape = {
                        "shape_type": "rectangle",
                        "points": [[cx - bw / 2, cy - bh / 2], [cx + bw / 2, cy + bh / 2]],
                    }
                else:
                    shape = {"shape_type": "polygon", "points": pts.tolist()}
                shapes.append({"label": names[int(v[0])], **shape, "flags": {}})
            doc = {
                "version": "5.2.1",
                "shapes": shapes,
                "imagePath": f,
                "imageData": None,
                "imageWidth": w,
                "imageHeight": h,
            }
            write(os.path.join(out, split, os.path.splitext(f)[0] + ".json"), json.dumps(doc))
    return out


def test_a_labelme_folder_packs_its_boxes_and_polygons(demo_dataset, demo_store, polygon_data, tmp_path):
    names = ["circle", "rectangle", "triangle"]
    for kind, dataset, store in (("boxes", demo_dataset, demo_store), ("polygons", polygon_data["polygons_dir"],
                                                                       polygon_data["polygons"])):  # fmt: skip
        root = labelme_folder(dataset, tmp_path / kind, names)
        out = str(tmp_path / f"{kind}.lmdb")
        meta = cli("pack", root, "-o", out, "--json")
        assert meta["pack"]["source_kind"] == "labelme" and meta["names"] == names and meta["skipped"] == []
        for split in ("train", "val"):
            want = {bytes(s.image(i)): s.get(i) for s in [open_store(store, split)] for i in range(len(s))}
            got = open_store(out, split)
            assert len(got) == len(want)
            for i in range(len(got)):
                a, b = want[bytes(got.image(i))], got.get(i)
                assert np.allclose(a.boxes, b.boxes, atol=1e-6) and (a.segments is None) == (b.segments is None)
                for pa, pb in zip(a.segments or [], b.segments or [], strict=True):
                    assert np.allclose(pa, pb, atol=1e-6)


def test_names_shapes_and_bad_files(tmp_path):
    root = tmp_path / "lm"
    write(str(root / "labels.txt"), "__ignore__\n_background_\ncat\ndog\n")  # labelme's own labels file
    shapes = [
        {"label": "dog", "shape_type": "circle", "points": [[32, 24], [42, 24]]},
        {"label": "cat", "shape_type": "rectangle", "points": [[50, 40], [10, 4]]},  # corners in any order
        {"label": "cat", "shape_type": "line", "points": [[1, 1], [5, 5]]},  # not an object: left out
        {"label": "bird", "shape_type": "rectangle", "points": [[1, 1], [5, 5]]},  # not in labels.txt
    ]
    for name, doc in (("a", {"shapes": shapes}), ("b", "{not json"), ("c", {"shapes": [{"label": "cat",
                      "shape_type": "polygon", "points": [[1, 1], [2, 2]]}]})):  # fmt: skip
        write(str(root / f"{name}.jpg"), jpeg_bytes(64, 48))
        write(str(root / f"{name}.json"), doc if isinstance(doc, str) else json.dumps(doc))
    write(str(root / "d.jpg"), jpeg_bytes(64, 48))  # no JSON: an image without objects
    meta = cli("pack", str(root), "-o", str(tmp_path / "s.lmdb"), "--json")
    assert meta["names"] == ["cat", "dog"] and meta["splits"]["train"]["count"] == 2
    reasons = {s["path"]: s["reason"] for s in meta["skipped"]}
    assert (
        reasons["b.json"].startswith("not a LabelMe annotation")
        and "shape 1 (cat): a polygon of 2" in reasons["c.json"]
    )
    rec = open_store(str(tmp_path / "s.lmdb"), "train").get(0)
    assert rec.boxes[:, 0].tolist() == [1, 0] and np.allclose(rec.boxes[1, 1:], [30 / 64, 22 / 48, 40 / 64, 36 / 48])
    assert np.allclose(rec.boxes[0, 1:], [32 / 64, 24 / 48, 20 / 64, 20 / 48], atol=1e-6)  # the circle's box
    assert len(rec.segments[0]) == 16 and len(rec.segments[1]) == 4  # the circle's polygon; the box's corners
    assert "shapes left out" in meta["fixed"][0]["reason"] and "bird" in meta["fixed"][0]["reason"]
    assert read_meta(str(tmp_path / "s.lmdb"))[1]["splits"]["train"]["missing_labels"] == 1


def test_a_folder_with_yolo_labels_stays_yolo(demo_dataset, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(os.path.join(demo_dataset, "images", "train"), root / "images")
    shutil.copytree(os.path.join(demo_dataset, "labels", "train"), root / "labels")
    write(str(root / "images" / "000000.json"), json.dumps({"shapes": []}))
    assert cli("pack", str(root / "images"), "--dry-run", "--json")["kind"] == "yolo"
