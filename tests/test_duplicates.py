"""`fastload verify --duplicates`: images stored twice, byte for byte, re-encoded smaller or mirrored, are grouped,
and a group that spans train and val is warned of; distinct images (blank ones of other colours too) are not
grouped."""

from __future__ import annotations

import io
import os
import shutil

from conftest import cli, cli_process, jpeg_bytes, write
from PIL import Image

from fastload.duplicates import find_duplicates


def test_exact_and_reencoded_copies_are_found_and_a_train_val_leak_is_warned(demo_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dataset, data)
    train = sorted(os.listdir(data / "images" / "train"))
    a, b, c, d = (data / "images" / "train" / name for name in train[:4])
    shutil.copyfile(a, data / "images" / "val" / "copy_of_a.jpg")
    small = Image.open(b).reduce(2)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=70)
    write(str(data / "images" / "val" / "smaller_b.jpg"), out.getvalue())
    shutil.copyfile(c, data / "images" / "train" / "zz_copy_of_c.jpg")
    Image.open(d).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(data / "images" / "val" / "mirror_d.jpg", quality=90)
    write(str(data / "images" / "train" / "red.jpg"), jpeg_bytes(64, 48, colour=(200, 30, 30)))
    write(str(data / "images" / "train" / "blue.jpg"), jpeg_bytes(64, 48, colour=(30, 30, 200)))
    store = str(tmp_path / "d.lmdb")
    cli("pack", str(data), "-o", store)
    proc = cli_process("verify", store, "--duplicates", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "4 groups of images stored more than once (8 images), 3 of them across splits" in proc.stderr
    assert f"warning: exact duplicates across train and val: train/images/train/{a.name} = " in proc.stderr
    found = find_duplicates(store)
    groups = {frozenset(os.path.basename(g["path"]) for g in group["images"]): group for group in found["listed"]}
    assert set(groups) == {
        frozenset({a.name, "copy_of_a.jpg"}), frozenset({b.name, "smaller_b.jpg"}),
        frozenset({c.name, "zz_copy_of_c.jpg"}), frozenset({d.name, "mirror_d.jpg"}),
    }  # fmt: skip
    assert groups[frozenset({d.name, "mirror_d.jpg"})]["kind"] == "mirrored"
    assert groups[frozenset({b.name, "smaller_b.jpg"})]["kind"] == "near"
    assert groups[frozenset({c.name, "zz_copy_of_c.jpg"})]["splits"] == ["train"]
    assert find_duplicates(store, distance=0)["groups"] >= 2  # the exact copies, whatever the distance
    json = cli("verify", store, "--duplicates", "--json")
    assert json["ok"] and json["duplicates"]["across_splits"] == 3
