"""`fastload verify --duplicates`: images stored twice, byte for byte, re-encoded smaller or mirrored, are grouped,
and a group that spans train and val is warned of; distinct images (blank ones of other colours too) are not
grouped."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
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
    json = cli("verify", store, "--duplicates", "--json", "--draw", str(tmp_path / "groups"))
    assert json["ok"] and json["duplicates"]["across_splits"] == 3
    drawn = sorted(os.path.basename(f) for f in json["duplicates"]["drawn"])  # each group as one picture
    assert len(drawn) == 4 and drawn[0].startswith("0001_") and "0004_exact_train.jpg" in drawn
    assert {name.split("_")[1] for name in drawn} == {"exact", "near", "mirrored"}
    with Image.open(tmp_path / "groups" / drawn[0]) as sheet:
        assert sheet.height == 240 + 18 + 16 and sheet.width > 2 * 240  # two images side by side
        assert len(np.unique(np.asarray(sheet.convert("L")))) > 50  # pictures, not a blank sheet


def crop(image: Image.Image, zoom: float, fx: float, fy: float) -> Image.Image:
    """A `zoom` crop placed at fx, fy (fractions of the room left), shrunk to 0.7: a crop augmentation's export."""
    w, h = image.size
    cw, ch = w * (1 - zoom), h * (1 - zoom)
    box = (round(fx * (w - cw)), round(fy * (h - ch)), round(fx * (w - cw) + cw), round(fy * (h - ch) + ch))
    return image.crop(box).resize((round(cw * 0.7), round(ch * 0.7)))


def test_cropped_copies_are_found_with_crops_only(demo_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dataset, data)
    train = sorted(os.listdir(data / "images" / "train"))
    a, b = (data / "images" / "train" / name for name in train[5:7])
    crop(Image.open(a), 0.12, 0.3, 0.8).save(data / "images" / "val" / "crop_a.jpg", quality=75)
    mirrored = crop(Image.open(b), 0.17, 0.9, 0.15).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.save(data / "images" / "val" / "crop_b.jpg", quality=75)
    store = str(tmp_path / "d.lmdb")
    cli("pack", str(data), "-o", store)
    plain = find_duplicates(store)
    assert plain["groups"] == 0 and "crop_distance" not in plain  # a crop is further than 8 bits from the whole
    found = cli("verify", store, "--crops", "--json")["duplicates"]  # --crops implies --duplicates
    groups = {frozenset(os.path.basename(g["path"]) for g in group["images"]): group for group in found["listed"]}
    assert set(groups) == {frozenset({a.name, "crop_a.jpg"}), frozenset({b.name, "crop_b.jpg"})}
    assert {g["kind"] for g in groups.values()} == {"cropped"} and found["across_splits"] == 2
    assert found["crop_distance"] == 10
    without_mirrors = find_duplicates(store, crops=True, mirrored=False)["listed"]
    assert [{os.path.basename(g["path"]) for g in group["images"]} for group in without_mirrors] == [
        {a.name, "crop_a.jpg"}
    ]  # the mirrored crop needs the mirror image's dHash
    proc = cli_process("verify", store, "--duplicates", "--crops", "--workers", "2")
    assert "warning: cropped duplicates across train and val: " in proc.stderr, proc.stderr


def test_frames_of_a_still_scene_are_one_group(demo_dataset, tmp_path):
    """A video's frames, all within a few bits of each other: one group, joined in numpy (not pair by pair)."""
    source = Image.open(os.path.join(demo_dataset, "images", "train", sorted(os.listdir(
        os.path.join(demo_dataset, "images", "train")))[0])).convert("RGB")  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(60):
        noisy = np.clip(np.asarray(source, np.float32) + rng.normal(0, 3, (source.height, source.width, 3)), 0, 255)
        folder = tmp_path / "data" / "images" / ("val" if i % 10 == 0 else "train")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"frame_{i:03d}.jpg", quality=85)
    store = str(tmp_path / "f.lmdb")
    cli("pack", str(tmp_path / "data"), "-o", store)
    for crops in (False, True):
        found = find_duplicates(store, crops=crops)
        assert (found["groups"], found["images_in_groups"], found["across_splits"]) == (1, 60, 1)
        assert found["listed"][0]["kind"] == "near"
