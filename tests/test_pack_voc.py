"""Pascal VOC folders (VOCdevkit/VOC2007, VOC2012, or one folder in their layout) pack as YOLOv5's data/VOC.yaml
converts them: its splits, its class order, its boxes, `difficult` objects left out; bad annotations are skipped
with their file and reason, and the rest is packed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack import PackOptions, pack
from fastload.store import open_store, read_meta

CLASSES = ("dog", "bicycle", "person", "aeroplane")  # found in the annotations; packed as sorted


def annotation(objects: list[tuple], size: tuple[int, int] | None) -> str:
    """A VOC XML: objects (name, xmin, ymin, xmax, ymax, difficult); size (w, h) or None for no <size>."""
    parts = ["<annotation><folder>VOC</folder><filename>x.jpg</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, x1, y1, x2, y2, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
            "<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>"
            "</object>"
        )
    return "".join(parts) + "</annotation>"


def voc_year(folder: str, sets: dict[str, list[str]], rng, size=(64, 48)) -> dict[str, list[tuple]]:
    """Write a VOC folder: an image and annotation per id of `sets` (ImageSets/Main/<set>.txt each, and one
    per-class list to be left out); returns each id's objects."""
    objects = {}
    for ids in sets.values():
        for image_id in ids:
            if image_id in objects:
                continue
            w, h = size
            write(os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), jpeg_bytes(w, h))
            objs = []
            for k in range(int(rng.integers(1, 4))):
                x1, y1 = int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2))
                x2, y2 = int(rng.integers(x1 + 2, w + 1)), int(rng.integers(y1 + 2, h + 1))
                objs.append((CLASSES[int(rng.integers(len(CLASSES)))], x1, y1, x2, y2, int(k == 2)))
            objects[image_id] = objs
            write(os.path.join(folder, "Annotations", f"{image_id}.xml"), annotation(objs, size))
    for name, ids in sets.items():
        write(os.path.join(folder, "ImageSets", "Main", f"{name}.txt"), "".join(f"{i}\n" for i in ids))
    write(os.path.join(folder, "ImageSets", "Main", "dog_train.txt"), "nothing 1\n")
    return objects


def yolov5_rows(objs: list[tuple], size: tuple[int, int], names: list[str]) -> np.ndarray:
    """YOLOv5's data/VOC.yaml convert_label for these objects (difficult ones left out), as float32 rows."""
    w, h = size
    rows = []
    for name, x1, y1, x2, y2, difficult in objs:
        if difficult != 1:
            cx, cy, bw, bh = (x1 + x2) / 2.0 - 1, (y1 + y2) / 2.0 - 1, x2 - x1, y2 - y1
            rows.append([names.index(name), cx / w, cy / h, bw / w, bh / h])
    return np.asarray(rows, np.float32).reshape(-1, 5)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> dict:
    """VOCdevkit/VOC2007 (train, val, trainval, test) and VOC2012 (train, val, trainval, and a test set without
    annotations, as VOC2012's), 11 images in all."""
    rng = np.random.default_rng(3)
    root = str(tmp_path_factory.mktemp("voc") / "VOCdevkit")
    objects = {}
    for year, sets in (
        ("VOC2007", {"train": ["000005", "000007"], "val": ["000009", "000012"], "test": ["000001", "000004"]}),
        ("VOC2012", {"train": ["2008_000001", "2008_000002", "2008_000003"], "val": ["2008_000004"],
                     "test": ["2008_000005"]}),
    ):  # fmt: skip
        sets["trainval"] = sets["train"] + sets["val"]
        objects.update(voc_year(os.path.join(root, year), sets, rng))
    os.remove(os.path.join(root, "VOC2012", "Annotations", "2008_000005.xml"))  # VOC2012's test: not annotated
    del objects["2008_000005"]
    return {"root": root, "objects": objects}


def test_a_vocdevkit_packs_into_yolov5s_splits_classes_and_boxes(devkit, tmp_path):
    out = str(tmp_path / "voc.lmdb")
    report = cli("pack", devkit["root"], "-o", out, "--json")
    names = sorted({o[0] for objs in devkit["objects"].values() for o in objs})
    assert report["names"] == names and report["pack"]["source_kind"] == "voc"
    # VOC2007 has an annotated test set: train is every train and val set, val the test set (YOLOv5's VOC.yaml);
    # VOC2012's test set has no annotations: left out
    assert report["splits"]["train"]["count"] == 8 and report["splits"]["val"]["count"] == 2
    assert set(report["splits"]) == {"train", "val"} and not report["skipped"]
    val = open_store(out, "val")
    assert sorted(os.path.basename(val.path_of(i)) for i in range(len(val))) == ["000001.jpg", "000004.jpg"]
    difficult = 0
    for split in ("train", "val"):
        store = open_store(out, split)
        for i in range(len(store)):
            rec = store.get(i)
            objs = devkit["objects"][os.path.splitext(os.path.basename(rec.path))[0]]
            difficult += sum(o[5] for o in objs)
            assert rec.boxes.shape[0] == sum(1 - o[5] for o in objs)
            assert np.allclose(rec.boxes, yolov5_rows(objs, (64, 48), names), atol=1e-6), rec.path
    assert difficult > 0  # some objects were difficult, and left out


def test_one_voc_folder_without_an_annotated_test_set_keeps_its_train_and_val(devkit, tmp_path):
    out = str(tmp_path / "voc2012.lmdb")
    report = cli("pack", os.path.join(devkit["root"], "VOC2012"), "-o", out, "--json")
    assert {s: v["count"] for s, v in report["splits"].items()} == {"train": 3, "val": 1}  # trainval not twice


def test_bad_annotations_are_skipped_with_file_and_reason_and_the_rest_packed(tmp_path):
    folder = str(tmp_path / "VOC2012")
    rng = np.random.default_rng(0)
    ids = ["good", "not_xml", "outside", "no_box", "odd_difficult", "no_annotation"]
    voc_year(folder, {"train": ids}, rng)
    ann = os.path.join(folder, "Annotations")
    write(os.path.join(ann, "not_xml.xml"), "0 0.5 0.5 0.2 0.2\n")
    write(os.path.join(ann, "outside.xml"), annotation([("dog", 10, 10, 90, 40, 0)], (64, 48)))
    write(os.path.join(ann, "no_box.xml"), annotation([("dog", "", 10, 30, 40, 0)], (64, 48)))
    write(os.path.join(ann, "odd_difficult.xml"), annotation([("dog", 1, 1, 30, 40, "yes")], (64, 48)))
    os.remove(os.path.join(ann, "no_annotation.xml"))
    with open(os.path.join(folder, "ImageSets", "Main", "train.txt"), "a") as f:
        f.write("lost\n")
    report = cli("pack", folder, "-o", str(tmp_path / "v.lmdb"), "--json")
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons.keys() == {
        "Annotations/not_xml.xml", "Annotations/outside.xml", "Annotations/no_box.xml",
        "Annotations/odd_difficult.xml", "ImageSets/Main/train.txt",
    }  # fmt: skip
    assert reasons["Annotations/not_xml.xml"].startswith("not a Pascal VOC annotation")
    assert reasons["Annotations/outside.xml"] == "object 1 (dog): box 10,10,90,40 outside the 64x48 image"
    assert reasons["Annotations/no_box.xml"] == "object 1 (dog): no numeric bndbox xmin, ymin, xmax, ymax"
    assert reasons["Annotations/odd_difficult.xml"] == "object 1: <difficult> is 'yes', not 0 or 1"
    assert reasons["ImageSets/Main/train.txt"] == "lists lost, which JPEGImages/ lacks"
    train = report["splits"]["train"]
    assert train["count"] == 2 and train["missing_labels"] == 1  # good, and the image without an annotation


def test_a_names_file_picks_the_classes_and_notes_the_objects_left_out(tmp_path):
    folder = str(tmp_path / "VOC")
    objects = voc_year(folder, {"train": ["a", "b", "c", "d"]}, np.random.default_rng(1))
    write(os.path.join(folder, "classes.txt"), "person\ndog\n")
    out = str(tmp_path / "v.lmdb")
    report = cli("pack", folder, "-o", out, "--json")
    assert report["names"] == ["person", "dog"]
    store = open_store(out, "train")
    noted = {f["path"]: f["reason"] for f in report["fixed"]}
    for i in range(len(store)):
        rec = store.get(i)
        objs = objects[os.path.splitext(os.path.basename(rec.path))[0]]
        kept = [o for o in objs if o[0] in ("person", "dog")]
        assert np.allclose(rec.boxes, yolov5_rows(kept, (64, 48), ["person", "dog"]), atol=1e-6)
        others = sorted({o[0] for o in objs if o[0] not in ("person", "dog") and not o[5]})
        assert noted.get(rec.path, "") == (f"objects of classes not in names left out: {', '.join(others)}"
                                           if others else "")  # fmt: skip


def test_without_image_sets_or_size_every_image_trains_on_its_own_size_shrunk_or_not(tmp_path):
    folder = str(tmp_path / "labelled")
    write(os.path.join(folder, "JPEGImages", "wide.jpg"), jpeg_bytes(200, 100))
    write(os.path.join(folder, "JPEGImages", "plain.png"), jpeg_bytes(40, 40))  # a JPEG named .png: still an image
    write(os.path.join(folder, "Annotations", "wide.xml"), annotation([("cat", 51, 26, 151, 76, 0)], None))
    write(os.path.join(folder, "Annotations", "plain.xml"), annotation([("cat", 11, 11, 31, 31, 0)], (0, 0)))
    for max_side in (None, 100):
        out = str(tmp_path / f"s{max_side}.lmdb")
        pack(folder, out, PackOptions(max_side=max_side))
        store = open_store(out, "train")
        recs = {rec.path: rec for rec in (store.get(i) for i in range(len(store)))}
        wide, plain = recs[os.path.join("JPEGImages", "wide.jpg")], recs[os.path.join("JPEGImages", "plain.png")]
        assert np.allclose(wide.boxes, [[0, 100 / 200, 50 / 100, 100 / 200, 50 / 100]], atol=1e-6)
        assert np.allclose(plain.boxes, [[0, 20 / 40, 20 / 40, 20 / 40, 20 / 40]], atol=1e-6)
        assert max(wide.size) == (max_side or 200)


def test_packing_again_copies_unchanged_records_and_a_new_class_repacks_all(tmp_path):
    folder = str(tmp_path / "VOC2007")
    objects = voc_year(folder, {"train": ["a", "b", "c"], "val": ["d"]}, np.random.default_rng(2))
    out = str(tmp_path / "v.lmdb")
    cli("pack", folder, "-o", out, "--json")
    xml, edit = os.path.join(folder, "Annotations", "b.xml"), [(objects["a"][0][0], 2, 2, 20, 20, 0)]
    write(xml, annotation(edit, (64, 48)))  # a class that "a" still names: the names stay
    again = cli("pack", folder, "-o", out, "--json")
    assert again["pack"]["reused"]["records"] == 3  # b was edited: packed again
    store = open_store(out, "train")
    b = next(store.get(i) for i in range(len(store)) if store.path_of(i).endswith("b.jpg"))
    assert np.allclose(b.boxes, yolov5_rows(edit, (64, 48), again["names"]), atol=1e-6)
    write(xml, annotation([("aardvark", 2, 2, 20, 20, 0)], (64, 48)))  # first by name: every other id moves
    moved = cli("pack", folder, "-o", out, "--json")
    assert moved["names"][0] == "aardvark" and moved["pack"]["reused"]["records"] == 0
    assert read_meta(out)[1]["names"] == moved["names"]


def test_yolov5s_voc_yaml_reads_the_unpacked_vocdevkit_with_its_names(devkit, tmp_path):
    voc_names = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
                 "pottedplant sheep sofa train tvmonitor").split()  # fmt: skip
    spec = (
        "path: ../datasets/VOC\ntrain:\n  - images/train2012\n  - images/train2007\nval:\n  - images/test2007\n"
        + "names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(voc_names))
        + "download: |\n  import xml.etree.ElementTree as ET\n  path = dir / 'images/VOCdevkit'\n"
    )  # fmt: skip
    data = write(str(tmp_path / "yolov5" / "VOC.yaml"), spec)
    images = tmp_path / "datasets" / "VOC" / "images"
    result = cli_process("pack", data, "-o", str(tmp_path / "v.lmdb"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "for Pascal VOC, unpack its archives" in result.stderr and str(images) in result.stderr
    images.mkdir(parents=True)
    os.symlink(devkit["root"], images / "VOCdevkit")  # as YOLOv5's download unpacks them, before converting
    report = cli("pack", data, "-o", str(tmp_path / "v.lmdb"), "--json")
    assert report["names"] == voc_names and report["pack"]["source_kind"] == "voc"
    assert {s: v["count"] for s, v in report["splits"].items()} == {"train": 8, "val": 2}
    store = open_store(str(tmp_path / "v.lmdb"), "val")
    for i in range(len(store)):
        rec = store.get(i)
        objs = devkit["objects"][os.path.splitext(os.path.basename(rec.path))[0]]
        assert np.allclose(rec.boxes, yolov5_rows(objs, (64, 48), voc_names), atol=1e-6)


@pytest.mark.parametrize("layout", ["images+annotations", "beside"])
def test_labelimg_and_kaggle_layouts_pack_their_xml(tmp_path, layout):
    """images/ with annotations/ (Kaggle's VOC-format sets), or each XML beside its image (LabelImg's default): packed
    from the XML, where a YOLO reading would find no label file and pack every image without objects."""
    folder = tmp_path / "labelled"
    images, notes = (folder / "images", folder / "annotations") if layout != "beside" else (folder, folder)
    objs = {"a": [("cat", 5, 5, 30, 20, 0)], "b": [("dog", 1, 1, 64, 48, 0), ("cat", 9, 9, 19, 19, 1)]}
    for stem, objects in objs.items():
        write(str(images / f"{stem}.png"), jpeg_bytes(64, 48))
        write(str(notes / f"{stem}.xml"), annotation(objects, (64, 48)))
    out = str(tmp_path / "v.lmdb")
    report = cli("pack", str(folder), "-o", out, "--json")
    assert report["pack"]["source_kind"] == "voc" and report["names"] == ["cat", "dog"]
    store = open_store(out, "train")
    for i in range(len(store)):
        rec = store.get(i)
        stem = os.path.splitext(os.path.basename(rec.path))[0]
        assert np.allclose(rec.boxes, yolov5_rows(objs[stem], (64, 48), ["cat", "dog"]), atol=1e-6)
    assert len(store) == 2


def test_a_yolo_folder_with_its_txt_labels_stays_yolo(demo_dataset, tmp_path):
    """XML beside images that have YOLO .txt labels, or a labels/ folder beside images/: read as YOLO."""
    flat = tmp_path / "flat"
    write(str(flat / "x.jpg"), jpeg_bytes(64, 48))
    write(str(flat / "x.txt"), "0 0.5 0.5 0.2 0.2\n")
    write(str(flat / "x.xml"), annotation([("cat", 5, 5, 30, 20, 0)], (64, 48)))
    assert cli("pack", str(flat), "-o", str(tmp_path / "f.lmdb"), "--json")["pack"]["source_kind"] == "yolo"
    given = tmp_path / "set" / "images"  # an images/ folder given itself: its labels are in ../labels/
    write(str(given / "y.jpg"), jpeg_bytes(64, 48))
    write(str(given / "y.xml"), annotation([("cat", 5, 5, 30, 20, 0)], (64, 48)))
    write(str(tmp_path / "set" / "labels" / "y.txt"), "0 0.5 0.5 0.2 0.2\n")
    report = cli("pack", str(given), "-o", str(tmp_path / "g.lmdb"), "--json")
    assert report["pack"]["source_kind"] == "yolo" and report["splits"]["train"]["boxes"] == 1
    ann = write(str(tmp_path / "demo" / "annotations" / "x.xml"), annotation([], (64, 48)))
    os.symlink(os.path.join(demo_dataset, "images"), tmp_path / "demo" / "images")
    os.symlink(os.path.join(demo_dataset, "labels"), tmp_path / "demo" / "labels")
    report = cli("pack", str(tmp_path / "demo"), "-o", str(tmp_path / "d.lmdb"), "--json")
    assert report["pack"]["source_kind"] == "yolo" and os.path.isfile(ann)


def test_vocs_tars_pack_together_as_yolov5s_voc_yaml_splits(devkit, tmp_path):
    import tarfile

    tars = []
    for year in ("VOC2012", "VOC2007"):  # each tar holds VOCdevkit/<year>/, as VOC's downloads do
        tars.append(str(tmp_path / f"{year}.tar"))
        with tarfile.open(tars[-1], "w") as t:
            t.add(os.path.join(devkit["root"], year), f"VOCdevkit/{year}")
    report = cli("pack", *tars, "-o", str(tmp_path / "voc.lmdb"), "--json")
    assert report["pack"]["source_kind"] == "voc" and report["pack"]["source"] == tars
    assert report["splits"]["train"]["count"] == 8 and report["splits"]["val"]["count"] == 2
