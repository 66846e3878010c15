"""Every kind of bad input is reported with its path and reason, and every good record is kept."""

import io
import json
import os

import numpy as np
import pytest
from conftest import cli, cli_process, image_bytes, jpeg_bytes, write
from PIL import Image

from fastload.store import open_store

GOOD = "0 0.5 0.5 0.2 0.2\n"


def _exif_rotated_jpeg() -> bytes:
    """Stored 40x60 (w x h) with orientation 6: upright it is 60x40 with a red block at its top-left."""
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :10] = (255, 0, 0)
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # orientation 6 = rotate 90 CW to display
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def _cmyk_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(out, "JPEG", quality=95)
    return out.getvalue()


TRAILING = b"\x00garbage\xff\xd8 after the end"
CASES = {
    # name: (image bytes, label text or None for no label file)
    "good1.jpg": (jpeg_bytes(), GOOD),
    "good2.jpg": (jpeg_bytes(80, 60), "1 0.3 0.3 0.1 0.1\n2 0.7 0.7 0.2 0.3\n"),
    "truncated.jpg": (jpeg_bytes(200, 150)[:-400], GOOD),
    "trailing.jpg": (jpeg_bytes(90, 70) + TRAILING, GOOD),
    "notimage.jpg": (b"this is a text file, not a JPEG\n" * 10, GOOD),
    "zero.jpg": (b"", GOOD),
    "picture.png": (image_bytes("PNG"), GOOD),
    "gray.jpg": (jpeg_bytes(mode="L"), GOOD),
    "gray.png": (image_bytes("PNG", mode="L"), GOOD),
    "cmyk.jpg": (_cmyk_jpeg(), GOOD),
    "deep16.png": (image_bytes("PNG", mode="I;16"), GOOD),
    "rotated.jpg": (_exif_rotated_jpeg(), "0 0.25 0.25 0.1 0.2\n"),
    "nolabel.jpg": (jpeg_bytes(), None),
    "emptylabel.jpg": (jpeg_bytes(), ""),
    "fields.jpg": (jpeg_bytes(), GOOD + "1 0.5 0.5 0.2\n"),
    "nan.jpg": (jpeg_bytes(), "1 0.5 abc 0.2 0.2\n"),
    "slightly_out.jpg": (jpeg_bytes(), "0 0.95 0.5 0.2 0.2\n1 1.004 0.5 0.1 0.1\n"),
    "nonsense.jpg": (jpeg_bytes(), "0 3.5 0.5 0.2 0.2\n"),
    "badclass.jpg": (jpeg_bytes(), "5 0.5 0.5 0.2 0.2\n"),
    "dupes.jpg": (jpeg_bytes(), GOOD + GOOD + "1 0.3 0.3 0.1 0.1\n" + GOOD),
}
SKIPPED = {
    "images/train/truncated.jpg": "truncated JPEG",
    "images/train/notimage.jpg": "not an image",
    "images/train/zero.jpg": "empty file",
    "labels/train/fields.txt": "line 2: expected 5 values",
    "labels/train/nan.txt": "line 1: not a number: 'abc'",
    "labels/train/nonsense.txt": "coordinate 3.5 is not normalised",
    "labels/train/badclass.txt": "class 5 outside names (0..2)",
}


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    for name, (data, label) in CASES.items():
        write(str(root / "images" / "train" / name), data)
        if label is not None:
            write(str(root / "labels" / "train" / (os.path.splitext(name)[0] + ".txt")), label)
    write(str(root / "data.yaml"), "train: images/train\nnames: [a, b, c]\n")
    out = str(root / "messy.lmdb")
    report = cli("pack", str(root), "-o", out, "--workers", "2", "--json")
    store = open_store(out)
    by_name = {os.path.basename(store.get(i).path): store.get(i) for i in range(len(store))}
    return root, report, by_name


def test_each_bad_file_is_skipped_with_path_and_reason(messy):
    _, report, by_name = messy
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(SKIPPED)
    for path, words in SKIPPED.items():
        assert words in skipped[path], (path, skipped[path])
    assert len(by_name) == len(CASES) - len(SKIPPED) == report["splits"]["train"]["count"]


def _decoded(rec) -> np.ndarray:
    im = Image.open(io.BytesIO(rec.image))
    assert im.format == "JPEG" and (im.height, im.width) == rec.size
    return np.asarray(im.convert("RGB"))


def test_png_grayscale_cmyk_and_16bit_are_packed_as_8bit_jpeg(messy):
    root, report, by_name = messy
    for name in ("picture.png", "gray.png", "cmyk.jpg", "deep16.png"):
        assert Image.open(io.BytesIO(by_name[name].image)).mode == "RGB", name
        _decoded(by_name[name])
    assert bytes(by_name["gray.jpg"].image) == CASES["gray.jpg"][0]  # grayscale JPEG: nvJPEG decodes it as is
    src16 = np.asarray(Image.open(io.BytesIO(CASES["deep16.png"][0])), np.float64)
    assert abs(_decoded(by_name["deep16.png"])[..., 0].mean() - src16.mean() / 257) < 3  # scaled, not clipped
    assert _decoded(by_name["cmyk.jpg"])[..., 0].mean() > 200  # CMYK (0, 255, 255, 0) is red
    fixed = {f["path"] for f in report["fixed"]}
    assert {"images/train/picture.png", "images/train/cmyk.jpg", "images/train/deep16.png"} <= fixed


def test_exif_rotated_jpeg_is_stored_upright(messy):
    _, _, by_name = messy
    rec = by_name["rotated.jpg"]
    assert rec.size == (40, 60)  # upright h, w
    px = _decoded(rec)
    assert px[:8, :8, 0].mean() > 200 and px[:8, :8, 1].mean() < 60  # red block top-left, as displayed
    assert px[-8:, -8:].mean() < 40
    assert np.allclose(rec.boxes, [[0, 0.25, 0.25, 0.1, 0.2]])  # labels are in the upright frame


def test_bytes_after_a_jpegs_end_are_dropped_and_the_rest_kept_byte_for_byte(messy):
    _, report, by_name = messy
    assert bytes(by_name["trailing.jpg"].image) == jpeg_bytes(90, 70)  # YOLOv5 re-saves it ("corrupt JPEG restored")
    fixed = {f["path"]: f["reason"] for f in report["fixed"]}
    assert fixed["images/train/trailing.jpg"] == f"{len(TRAILING)} bytes after the JPEG's end dropped"


def test_missing_and_empty_labels_mean_no_objects(messy):
    _, report, by_name = messy
    assert by_name["nolabel.jpg"].boxes.shape == (0, 5) and by_name["emptylabel.jpg"].boxes.shape == (0, 5)
    assert report["splits"]["train"]["missing_labels"] == 1 and report["splits"]["train"]["empty_labels"] == 1


def test_slightly_out_is_clipped_and_duplicates_removed(messy):
    _, report, by_name = messy
    boxes = by_name["slightly_out.jpg"].boxes
    x1, x2 = boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 1] + boxes[:, 3] / 2
    assert len(boxes) == 2 and x1.min() >= 0 and x2.max() <= 1 + 1e-6
    assert np.allclose(boxes[0], [0, 0.925, 0.5, 0.15, 0.2], atol=1e-6)
    assert np.allclose(by_name["dupes.jpg"].boxes, [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.1]])
    fixed = {f["path"]: f["reason"] for f in report["fixed"]}
    assert "duplicate" in fixed["images/train/dupes.jpg"] and "clipped" in fixed["images/train/slightly_out.jpg"]


def test_strict_stops_at_the_first_bad_input_and_writes_nothing(messy, tmp_path):
    root, _, _ = messy
    out = tmp_path / "strict.lmdb"
    proc = cli_process("pack", str(root), "-o", str(out), "--strict", "--workers", "1")
    assert proc.returncode == 2 and not out.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert "(--strict)" in last and "Traceback" not in proc.stderr
    assert any(p in last for p in SKIPPED)


def test_coco_paths_that_escape_or_do_not_exist(demo_dataset, tmp_path):
    from test_pack import coco_from_demo

    extra = [
        {"id": 900, "file_name": "../../../../etc/passwd", "width": 10, "height": 10},
        {"id": 901, "file_name": "missing.jpg", "width": 10, "height": 10},
    ]
    path, img_dir = coco_from_demo(demo_dataset, tmp_path, extra)
    report = cli("pack", path, "--coco-images", img_dir, "-o", str(tmp_path / "c.lmdb"), "--json")
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert skipped == {"../../../../etc/passwd": "path escapes the image folder", "missing.jpg": "file not found"}
    assert report["splits"]["val"]["count"] == 5


@pytest.mark.parametrize("case", ["empty_dataset", "missing_src", "all_bad", "coco_without_images"])
def test_nothing_to_pack_exits_2_with_one_line(tmp_path, case):
    src = tmp_path / "src"
    if case == "empty_dataset":
        (src / "images" / "train").mkdir(parents=True)
    elif case == "all_bad":
        write(str(src / "images" / "train" / "a.jpg"), b"")
        write(str(src / "images" / "train" / "b.jpg"), b"junk")
    elif case == "coco_without_images":
        src = tmp_path / "instances.json"
        write(str(src), json.dumps({"images": [], "annotations": [], "categories": []}))
    proc = cli_process("pack", str(src), "-o", str(tmp_path / "out.lmdb"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out.lmdb").exists()
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]
