"""`fastload unpack STORE -o DIR` writes a YOLOv5 dataset that packs back into the same records (image bytes,
boxes and polygons exactly); labels as they were packed (none for an image that had no label file); names that
clash made unique; a damaged record left out and named; nothing written over."""

import os
import shutil

import numpy as np
import yaml
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack import PackOptions, pack
from fastload.store import open_store, open_writer, read_meta
from fastload.store.record import Record


def same_content(a: str, b: str) -> None:
    """Two stores hold the same splits, names, and per record the same image bytes, size, boxes and polygons."""
    meta_a, meta_b = read_meta(a)[1], read_meta(b)[1]
    assert meta_a["names"] == meta_b["names"] and list(meta_a["splits"]) == list(meta_b["splits"])
    for split in meta_a["splits"]:
        sa, sb = open_store(a, split), open_store(b, split)
        by_image = {bytes(sb.image(i)): sb.get(i) for i in range(len(sb))}
        assert len(sa) == len(sb) == len(by_image)
        for i in range(len(sa)):
            ra = sa.get(i)
            rb = by_image[bytes(ra.image)]
            assert ra.size == rb.size and np.array_equal(ra.boxes, rb.boxes), ra.path
            assert (ra.segments is None) == (rb.segments is None)
            for pa, pb in zip(ra.segments or [], rb.segments or [], strict=True):
                assert np.array_equal(pa, pb)


def test_a_store_unpacked_packs_back_into_the_same_records(demo_store, polygon_data, tmp_path):
    for name, store in (("boxes", demo_store), ("polygons", polygon_data["polygons"])):
        out = str(tmp_path / name)
        result = cli("unpack", store, "-o", out, "--json")
        assert set(result["splits"]) == {"train", "val"} and result["skipped"] == []
        config = yaml.safe_load(open(os.path.join(out, "data.yaml")))
        assert config["path"] == out and config["train"] == "images/train" and config["val"] == "images/val"
        assert list(config["names"].values()) == read_meta(store)[1]["names"]
        again = str(tmp_path / f"{name}.lmdb")
        pack(os.path.join(out, "data.yaml"), again, PackOptions())
        same_content(store, again)
    first = sorted(os.listdir(tmp_path / "polygons" / "labels" / "train"))[0]
    row = open(tmp_path / "polygons" / "labels" / "train" / first).readline().split()
    assert len(row) > 5 and len(row) % 2 == 1  # a polygon row: class, then x y pairs


def test_labels_as_packed_and_clashing_names_made_unique(tmp_path):
    data = tmp_path / "data"
    for folder, colour in (("a", (200, 0, 0)), ("b", (0, 200, 0))):
        write(str(data / "images" / "train" / folder / "000001.jpg"), jpeg_bytes(colour=colour))
        write(str(data / "labels" / "train" / folder / "000001.txt"), "0 0.5 0.5 0.25 0.25\n")
    write(str(data / "images" / "train" / "empty.jpg"), jpeg_bytes(colour=(9, 9, 9)))
    write(str(data / "labels" / "train" / "empty.txt"), "")
    write(str(data / "images" / "train" / "unlabelled.png"), jpeg_bytes(colour=(90, 9, 9)))  # a JPEG named .png
    store = str(tmp_path / "s.lmdb")
    pack(str(data), store, PackOptions())
    out = tmp_path / "out"
    cli("unpack", store, "-o", str(out))
    images = sorted(os.listdir(out / "images" / "train"))
    assert images == ["000001.jpg", "empty.jpg", "images_train_b_000001.jpg", "unlabelled.jpg"]
    assert sorted(os.listdir(out / "labels" / "train")) == ["000001.txt", "empty.txt", "images_train_b_000001.txt"]
    assert open(out / "labels" / "train" / "empty.txt").read() == ""
    assert open(out / "labels" / "train" / "000001.txt").read() == "0 0.5 0.5 0.25 0.25\n"


def test_a_damaged_record_is_left_out_and_named(tmp_path):
    store = str(tmp_path / "s.lmdb")
    writer = open_writer(store, "lmdb")
    writer.begin_split("train")
    for k in range(3):
        rec = Record(jpeg_bytes(colour=(60 * k, 0, 0)), np.array([[0, 0.5, 0.5, 0.2, 0.2]], np.float32), (48, 64),
                     f"images/train/{k}.jpg")  # fmt: skip
        rec.crc32 = rec.compute_crc() ^ (k == 1)  # the second one's CRC does not match
        writer.add(rec)
    meta = {"format": "fastload", "version": 2, "names": ["thing"], "skipped": []}
    writer.finish({**meta, "splits": {"train": writer.end_split()}})
    result = cli("unpack", store, "-o", str(tmp_path / "out"), "--json")
    assert result["splits"]["train"]["images"] == 2
    assert [(s["index"], s["path"]) for s in result["skipped"]] == [(1, "images/train/1.jpg")]
    assert "CRC32 mismatch" in result["skipped"][0]["reason"]


def test_one_split_and_no_overwriting(demo_store, tmp_path):
    out = str(tmp_path / "val-only")
    result = cli("unpack", demo_store, "-o", out, "--split", "val", "--json")
    assert list(result["splits"]) == ["val"] and result["splits"]["val"]["images"] == 5
    assert sorted(os.listdir(out)) == ["data.yaml", "images", "labels"]
    got = cli_process("unpack", demo_store, "-o", out)
    assert got.returncode == 2 and got.stderr.strip() == f"Error: {out}: exists; not overwriting it (give a new folder)"
    got = cli_process("unpack", demo_store, "-o", str(tmp_path / "x"), "--split", "test")
    assert got.returncode == 2 and "no split 'test' (its splits: train, val)" in got.stderr
    assert not os.path.exists(tmp_path / "x") and [n for n in os.listdir(tmp_path) if ".partial-" in n] == []
    shutil.rmtree(out)


def test_coco_format_reads_in_pycocotools_and_packs_back_as_a_coco_folder(demo_store, polygon_data, tmp_path):
    from pycocotools.coco import COCO

    for name, store in (("boxes", demo_store), ("polygons", polygon_data["polygons"])):
        out = str(tmp_path / name)
        result = cli("unpack", store, "-o", out, "--format", "coco", "--json")
        assert sorted(os.listdir(out)) == ["annotations", "images"] and result["skipped"] == []
        val = open_store(store, "val")
        coco = COCO(result["annotations"]["val"])
        assert len(coco.getImgIds()) == len(val) and len(coco.getAnnIds()) == len(val.boxes)
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == read_meta(store)[1]["names"]
        again = str(tmp_path / f"{name}.lmdb")
        meta = pack(out, again, PackOptions())
        assert meta["pack"]["source_kind"] == "coco" and meta["names"] == read_meta(store)[1]["names"]
        for split in ("train", "val"):
            a = open_store(store, split)
            b = {bytes(s.image(i)): s.get(i) for s in [open_store(again, split)] for i in range(len(s))}
            for i in range(len(a)):
                ra, rb = a.get(i), b[bytes(a.image(i))]
                assert ra.size == rb.size and np.allclose(ra.boxes, rb.boxes, atol=1e-6), ra.path
                for pa, pb in zip(ra.segments or [], rb.segments or [], strict=True):
                    assert np.allclose(pa, pb, atol=1e-6)
                assert (ra.segments is None) == (rb.segments is None)


def test_voc_format_packs_back_as_a_voc_folder_with_the_same_boxes(demo_store, tmp_path):
    out = str(tmp_path / "voc")
    result = cli("unpack", demo_store, "-o", out, "--format", "voc", "--json")
    assert sorted(os.listdir(out)) == ["Annotations", "ImageSets", "JPEGImages", "classes.txt"]
    assert sorted(os.listdir(os.path.join(out, "ImageSets", "Main"))) == ["train.txt", "val.txt"]
    assert result["splits"]["val"]["images"] == 5
    again = str(tmp_path / "again.lmdb")
    meta = pack(out, again, PackOptions())
    assert meta["pack"]["source_kind"] == "voc" and meta["names"] == read_meta(demo_store)[1]["names"]
    for split in ("train", "val"):
        want = {bytes(s.image(i)): s.get(i) for s in [open_store(demo_store, split)] for i in range(len(s))}
        got = open_store(again, split)
        assert len(got) == len(want)
        for i in range(len(got)):  # YOLOv5's VOC conversion of the written XML gives the boxes back
            assert np.allclose(got.get(i).boxes, want[bytes(got.image(i))].boxes, atol=1e-6)
