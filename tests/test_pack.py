"""`fastload pack` from a YOLO folder, a data.yaml and a COCO JSON; --max-side; lossless conversion."""

import io
import json
import os
import shutil

import numpy as np
import pytest
from conftest import cli, cli_process, write
from PIL import Image

from fastload.pack import PackOptions, pack
from fastload.store import open_store
from tools.yolo_to_coco import yolo_to_coco


def label_rows(path: str) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).astype(np.float32) if os.path.getsize(path) else np.zeros((0, 5), np.float32)


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_pack_yolo_folder_keeps_bytes_boxes_and_sizes(demo_dataset, tmp_path, fmt):
    out = str(tmp_path / f"demo.{fmt}")
    report = cli("pack", demo_dataset, "-o", out, "--format", fmt, "--workers", "2", "--json")
    assert report["format"] == fmt and report["names"] == ["circle", "rectangle", "triangle"]
    assert report["splits"]["train"]["count"] == 19 and report["splits"]["val"]["count"] == 5
    assert report["skipped"] == [] and len(report["fingerprint"]) == 64
    for split in ("train", "val"):
        store = open_store(out, split)
        for i in range(len(store)):
            rec = store.get(i)
            src = os.path.join(demo_dataset, rec.path)
            assert bytes(rec.image) == open(src, "rb").read()  # original bytes, not re-encoded
            w, h = Image.open(src).size
            assert rec.size == (h, w)
            lbl = src.replace(f"images{os.sep}", f"labels{os.sep}").replace(".jpg", ".txt")
            assert np.allclose(rec.boxes, label_rows(lbl), atol=1e-6)
    assert report["splits"]["train"]["bytes"] == sum(
        os.path.getsize(os.path.join(demo_dataset, "images", "train", f))
        for f in os.listdir(os.path.join(demo_dataset, "images", "train"))
    )


def test_same_source_gives_same_fingerprint_and_a_change_changes_it(demo_dataset, tmp_path):
    copy = shutil.copytree(demo_dataset, tmp_path / "copy")
    a = pack(str(copy), str(tmp_path / "a.lmdb"), PackOptions())
    b = pack(str(copy), str(tmp_path / "b.lmdb"), PackOptions())
    with open(copy / "labels" / "train" / "000000.txt", "a") as f:
        f.write("0 0.5 0.5 0.1 0.1\n")
    c = pack(str(copy), str(tmp_path / "c.lmdb"), PackOptions())
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def test_data_yaml_with_list_files_lists_and_dict_names(demo_dataset, tmp_path):
    root = shutil.copytree(demo_dataset, tmp_path / "ds")
    train = sorted(os.listdir(root / "images" / "train"))
    write(str(root / "lists" / "half.txt"), "".join(f"../images/train/{f}\n" for f in train[:10]))
    write(
        str(root / "my.yaml"),
        (
            "path: .\n"
            "train: [lists/half.txt, images/val]\n"
            f"val: images/train/{train[12]}\n"
            "names: {0: circle, 1: rectangle, 2: triangle}\n"
        ),
    )
    meta = pack(str(root / "my.yaml"), str(tmp_path / "y.lmdb"), PackOptions())
    assert meta["splits"]["train"]["count"] == 15 and meta["splits"]["val"]["count"] == 1
    assert meta["names"] == ["circle", "rectangle", "triangle"]
    assert open_store(str(tmp_path / "y.lmdb"), "val").get(0).path == f"images/train/{train[12]}"


def test_roboflow_export_and_an_images_folder_pack_into_their_splits(demo_dataset, tmp_path):
    """Roboflow's layout (<split>/images, `valid` for val; its data.yaml says ../train/images, which YOLOv5 reads
    as train/images) with and without its data.yaml, and an images/ folder given itself: train and val apart, and
    the classes named."""
    root = tmp_path / "rf"
    for split, folder in (("train", "train"), ("val", "valid")):
        for kind in ("images", "labels"):
            shutil.copytree(os.path.join(demo_dataset, kind, split), root / folder / kind)
    write(str(root / "data.yaml"), "train: ../train/images\nval: ../valid/images\nnc: 3\nnames: [c, r, t]\n")
    dataset_images = os.path.join(demo_dataset, "images")  # named by the dataset's data.yaml
    write(str(root / "classes.txt"), "c\nr\nt\n")
    for src in (root, root / "data.yaml", None, dataset_images):
        if src is None:
            os.remove(root / "data.yaml")
            src = root
        meta = pack(str(src), str(tmp_path / "s.lmdb"), PackOptions())
        assert (meta["splits"]["train"]["count"], meta["splits"]["val"]["count"]) == (19, 5), src
        assert meta["names"] == (["circle", "rectangle", "triangle"] if src == dataset_images else ["c", "r", "t"])
        assert sum(meta["splits"][s].get("missing_labels", 0) for s in ("train", "val")) == 0, src
        first_val = sorted(os.listdir(os.path.join(demo_dataset, "images", "val")))[0]
        assert os.path.basename(open_store(str(tmp_path / "s.lmdb"), "val").get(0).path) == first_val, src


def test_a_data_yaml_fetches_its_download_beside_its_path_as_yolov5(demo_dataset, tmp_path):
    """coco128.yaml's form: `path: ../datasets/NAME` and a .zip URL holding NAME/; the first pack fetches and
    unpacks it there (nothing temporary left), later ones find it. A script, a URL that fails and a file that is not
    a zip are one line each, and leave nothing behind."""
    shutil.copytree(demo_dataset, tmp_path / "src" / "tiny", ignore=shutil.ignore_patterns("*.yaml"))
    zipped = shutil.make_archive(str(tmp_path / "src" / "tiny"), "zip", tmp_path / "src", "tiny")
    shutil.rmtree(tmp_path / "src" / "tiny")
    data = tmp_path / "yolov5" / "data"
    spec = "path: ../datasets/tiny\ntrain: images/train\nval: images/val\nnames: [c, r, t]\ndownload: {}\n"
    yaml = write(str(data / "tiny.yaml"), spec.format(f"file://{zipped}"))
    datasets = tmp_path / "yolov5" / "datasets"
    os.makedirs(datasets / "tiny")  # the folder, but not the images: fetched, and what is there kept
    write(str(datasets / "tiny" / "README.txt"), "mine\n")
    report = cli("pack", yaml, "-o", str(tmp_path / "t.lmdb"), "--json")
    assert (report["splits"]["train"]["count"], report["splits"]["val"]["count"]) == (19, 5)
    assert sorted(os.listdir(datasets)) == ["tiny"]
    assert sorted(os.listdir(datasets / "tiny")) == ["README.txt", "images", "labels"]
    os.remove(zipped)  # found where it was unpacked: not fetched again
    assert cli("pack", yaml, "-o", str(tmp_path / "t2.lmdb"), "--json")["splits"]["val"]["count"] == 5
    shutil.rmtree(datasets)
    for download, code, says in (
        ("|\n  from utils.general import download\n  download(['x.zip'])", 2, "is a script, which fastload"),
        (f"file://{zipped}", 1, f"cannot fetch file://{zipped} ("),
        (f"file://{write(str(tmp_path / 'not.zip'), 'text')}", 1, "not.zip is not a zip file"),
    ):
        write(yaml, spec.format(download))
        result = cli_process("pack", yaml, "-o", str(tmp_path / "t3.lmdb"))
        line = f"Error: {yaml}: train path {datasets / 'tiny' / 'images' / 'train'} does not exist; "
        assert result.returncode == code and result.stderr.strip().splitlines()[-1].startswith(line), result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr
        assert not os.path.exists(tmp_path / "t3.lmdb") and (not datasets.exists() or os.listdir(datasets) == [])


def coco_from_demo(demo_dataset: str, tmp_path, extra_images=(), crowd=True) -> tuple[str, str]:
    """A COCO instances JSON for the demo val images, category ids 7, 1, 3 (unsorted on purpose: class
    index follows sorted category id), with one crowd box on the first image."""
    coco = yolo_to_coco(demo_dataset, "val", ["circle", "rectangle", "triangle"], [7, 1, 3], extra_images, crowd)
    path = write(str(tmp_path / "instances_val.json"), json.dumps(coco))
    return path, os.path.join(demo_dataset, "images", "val")


def test_coco_json_boxes_classes_and_crowd(demo_dataset, tmp_path):
    path, img_dir = coco_from_demo(demo_dataset, tmp_path)
    report = cli("pack", path, "--coco-images", img_dir, "-o", str(tmp_path / "c.lmdb"), "--json")
    assert report["names"] == ["rectangle", "triangle", "circle"]  # by category id 1, 3, 7
    store = open_store(str(tmp_path / "c.lmdb"), "val")
    assert len(store) == 5 and report["splits"]["val"]["count"] == 5
    remap = {0: 2, 1: 0, 2: 1}  # demo class -> COCO-ordered class
    for i in range(5):
        rec = store.get(i)
        rows = label_rows(os.path.join(demo_dataset, "labels", "val", rec.path[:-4] + ".txt"))
        rows[:, 0] = [remap[int(c)] for c in rows[:, 0]]
        assert np.allclose(rec.boxes, rows, atol=1e-5)  # and the crowd box on image 0 is gone


@pytest.mark.parametrize("first,second", [("lmdb", "zarr"), ("zarr", "lmdb")])
def test_conversion_is_lossless(demo_dataset, tmp_path, first, second):
    a, b, c = (str(tmp_path / f"{n}.{f}") for n, f in (("a", first), ("b", second), ("c", first)))
    pack(demo_dataset, a, PackOptions(fmt=first))
    report = cli("pack", a, "-o", b, "--format", second, "--json")
    cli("pack", b, "-o", c, "--format", first)
    assert report["format"] == second
    for split in ("train", "val"):
        sa, sb, sc = open_store(a, split), open_store(b, split), open_store(c, split)
        assert len(sa) == len(sb) == len(sc)
        for i in range(len(sa)):
            ra, rb, rc = sa.get(i), sb.get(i), sc.get(i)
            assert bytes(ra.image) == bytes(rb.image) == bytes(rc.image)
            assert np.array_equal(ra.boxes, rb.boxes) and np.array_equal(ra.boxes, rc.boxes)
            assert ra.size == rb.size == rc.size and ra.path == rb.path == rc.path and ra.crc32 == rb.crc32
    assert open_store(b).meta["fingerprint"] == open_store(a).meta["fingerprint"]


def test_max_side_shrinks_large_images_and_never_upscales(demo_dataset, tmp_path):
    out = str(tmp_path / "m.lmdb")
    report = cli("pack", demo_dataset, "-o", out, "--max-side", "96", "--json")
    store = open_store(out)
    shrunk = 0
    for i in range(len(store)):
        rec = store.get(i)
        src_w, src_h = Image.open(os.path.join(demo_dataset, rec.path)).size
        im = Image.open(io.BytesIO(rec.image))
        assert im.format == "JPEG" and (im.height, im.width) == rec.size
        if max(src_w, src_h) > 96:
            assert max(rec.size) == 96 and abs(rec.size[0] / rec.size[1] - src_h / src_w) < 0.03
            shrunk += 1
        else:
            assert (
                rec.size == (src_h, src_w)
                and bytes(rec.image) == open(os.path.join(demo_dataset, rec.path), "rb").read()
            )
    assert shrunk > 0 and report["fixed_count"] >= shrunk
    big = cli("pack", demo_dataset, "-o", str(tmp_path / "big.lmdb"), "--max-side", "4096", "--json")
    assert big["fixed_count"] == 0  # nothing was upscaled or re-encoded
