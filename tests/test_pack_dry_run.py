"""`fastload pack SRC --dry-run` says how SRC reads (kind, names, splits, images with labels) and writes nothing,
for a folder, an archive (unpacked to look, then removed) and a COCO folder; without it, -o is required."""

import os
import shutil
import zipfile

from conftest import cli, cli_process, jpeg_bytes, write


def test_a_folder_and_its_zip_are_described_and_nothing_is_written(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    os.remove(os.path.join(data, "labels", "val", sorted(os.listdir(os.path.join(data, "labels", "val")))[0]))
    result = cli("pack", data, "--dry-run", "--json")
    assert result["kind"] == "data.yaml" and result["names"] == ["circle", "rectangle", "triangle"]
    assert result["splits"]["train"] == {"images": 19, "labelled": 19, "first": [f"images/train/{k:06d}.jpg"
                                                                                  for k in range(3)]}  # fmt: skip
    assert result["splits"]["val"]["images"] == 5 and result["splits"]["val"]["labelled"] == 4
    archive = str(tmp_path / "d.zip")
    with zipfile.ZipFile(archive, "w") as z:
        for dirpath, _, files in os.walk(data):
            for f in files:
                z.write(os.path.join(dirpath, f), os.path.join("d", os.path.relpath(os.path.join(dirpath, f), data)))
    out = str(tmp_path / "out" / "s.lmdb")
    proc = cli_process("pack", archive, "-o", out, "--dry-run")
    assert proc.returncode == 0 and f"{archive}: a YOLO dataset by its data.yaml; names 3: circle" in proc.stderr
    assert "  val: 5 images, 4 with labels (images/val/" in proc.stderr and "nothing written" in proc.stderr
    assert os.listdir(tmp_path / "out") == []  # unpacked beside it to look, and removed
    proc = cli_process("pack", data)
    assert proc.returncode == 2 and "Missing option '-o' / '--out'" in proc.stderr


def test_a_coco_folder_counts_the_images_its_json_labels(demo_dataset, tmp_path, demo_store):
    from test_pack_coco_folder import coco_layout

    root = coco_layout(demo_dataset, tmp_path, "coco")
    result = cli("pack", root, "--dry-run", "--json")
    assert result["kind"] == "coco" and result["splits"]["val"]["images"] == 5
    assert result["label_files"] == ["annotations/instances_train2017.json", "annotations/instances_val2017.json"]
    assert result["splits"]["train"]["labelled"] == sum(n > 0 for n in _box_counts(demo_store, "train"))
    proc = cli_process("pack", demo_store, "--dry-run")
    assert proc.returncode == 2 and "a fastload store, not a dataset" in proc.stderr


def _box_counts(store: str, split: str) -> list[int]:
    from fastload.store import open_store

    s = open_store(store, split)
    return [len(s.labels(i)) for i in range(len(s))]


def test_dry_run_with_tile_counts_the_tiles_pack_makes(tmp_path):
    from test_pack_tiles import large_dataset

    data = large_dataset(tmp_path / "d", {"train": 2, "val": 1}, objects=3)
    write(os.path.join(data, "images", "train", "small.jpg"), jpeg_bytes(200, 150))  # fits a tile: kept
    write(os.path.join(data, "images", "train", "broken.jpg"), b"not a jpeg")  # pack skips it
    for options in (["--tile", "256"], ["--tile", "256", "--tile-whole", "--max-side", "700"]):
        seen = cli("pack", data, "--dry-run", "--json", *options)
        packed = cli("pack", data, "-o", str(tmp_path / f"t{len(options)}.lmdb"), "--json", *options)
        for split in ("train", "val"):
            assert seen["splits"][split]["tiles"] == packed["splits"][split]["count"], (options, split)
        assert seen["splits"]["train"]["cut"] == 2 and seen["splits"]["train"]["unreadable"] == 1
    proc = cli_process("pack", data, "--dry-run", "--tile", "256")
    assert "--tile: 31 tiles (2 of the 4 images larger than a tile, cut; the rest kept); 1 without a" in proc.stderr
