"""The Python detector (YOLOv5's torch.hub model): the overfit model on one training image given as a file name, a
file:// URL, a PIL image, a numpy array and a torch tensor finds the same boxes, which are `fastload detect`'s
and lie on the labelled objects; a batch of differently sized images gives each its own boxes; YOLOv5's accessors,
drawing, saving and crops; an exported model in the same call; mistakes are one-line errors."""

import os
import re

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image
from test_detect import found, read_labels

from fastload.errors import FastloadError
from yolo.predictor import Detector


@pytest.fixture(scope="module")
def detector(overfit) -> Detector:
    return Detector(overfit["weights"], device="cpu")


def as_rows(boxes: np.ndarray, size) -> np.ndarray:
    """[k, 6] x1, y1, x2, y2, conf, cls in pixels of `size` (h, w) -> label rows cls, cx, cy, w, h, conf."""
    h, w = size
    xyxy = boxes[:, :4] / [w, h, w, h]
    return np.column_stack([boxes[:, 5], (xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2], boxes[:, 4]])


def agree(a: np.ndarray, b: np.ndarray, size) -> bool:
    """Two detections of one image placed differently in their canvases (by a shift that is not a multiple of the
    stride, which moves boxes a little and tips uncertain ones over or under the threshold): each sure box of
    either (over 0.5, and not a second box on an object a surer box of its class has found: NMS at IoU 0.45 keeps
    or drops those by a hair) is one of the other's (same class, IoU > 0.5), and there is one."""
    a, b = as_rows(a, size), as_rows(b, size)

    def sure(rows: np.ndarray) -> np.ndarray:
        rows = rows[np.argsort(-rows[:, 5])]
        second = [found(rows[k : k + 1], rows[:k], 0.3)[0] if k else False for k in range(len(rows))]
        return rows[(rows[:, 5] > 0.5) & ~np.array(second, bool)]

    return len(sure(a)) >= 1 and found(sure(a), b, 0.5).all() and found(sure(b), a, 0.5).all()


def test_every_kind_of_image_gets_the_boxes_detect_finds(overfit, detector, tmp_path):
    names = sorted(os.listdir(overfit["images"]))[:4]
    path = os.path.join(overfit["images"], names[0])
    picture = np.asarray(Image.open(path).convert("RGB"))
    kinds = [path, f"file://{path}", Image.open(path), picture, torch.from_numpy(picture.copy()).permute(2, 0, 1)]
    results = [detector(image) for image in kinds]
    first = results[0].boxes[0]
    truth = np.loadtxt(os.path.join(overfit["labels"], os.path.splitext(names[0])[0] + ".txt"), ndmin=2)
    assert found(truth, as_rows(first, picture.shape[:2]), 0.5).mean() >= 0.8
    for r in results[1:]:
        assert r.boxes[0].shape == first.shape and np.allclose(r.boxes[0], first, atol=1e-3)
    assert [r.files[0] for r in results] == [names[0], names[0], names[0], "image0.jpg", "image0.jpg"]
    # `fastload detect` on the same files (DALI's decode and resize): the same boxes, near enough
    cli("detect", *[os.path.join(overfit["images"], n) for n in names], "--weights", overfit["weights"], "--project",
        str(tmp_path), "--name", "d", "--nosave", "--save-txt", "--save-conf", "--batch", "1")  # fmt: skip
    for n in names:
        mine = detector(os.path.join(overfit["images"], n))
        rows = as_rows(mine.boxes[0], mine.images[0].shape[:2])
        theirs = read_labels(tmp_path / "d" / "labels" / (os.path.splitext(n)[0] + ".txt"))
        assert len(rows) == len(theirs) and found(theirs, rows, 0.9).all(), n
        assert np.abs(np.sort(rows[:, 5]) - np.sort(theirs[:, 5])).max() < 0.05, n


def test_a_batch_of_different_sizes_gives_each_image_its_own_boxes(overfit, detector):
    names = sorted(os.listdir(overfit["images"]))[:3]
    pictures = [np.asarray(Image.open(os.path.join(overfit["images"], n)).convert("RGB")) for n in names]
    pictures[1] = np.ascontiguousarray(np.rot90(pictures[1]))  # portrait
    pictures[2] = np.asarray(Image.fromarray(pictures[2]).resize((320, 240)))  # twice the size
    alone = [detector(p).boxes[0] for p in pictures]
    together = detector(pictures)
    assert len(together) == 3 and together.shape[0] == 3 and together.shape[2:] == (160, 160)  # around all three
    for p, a, t in zip(pictures, alone, together.boxes, strict=True):
        assert agree(a, t, p.shape[:2])
        assert (t[:, :4] >= 0).all() and (t[:, [0, 2]] <= p.shape[1]).all() and (t[:, [1, 3]] <= p.shape[0]).all()


def test_yolov5s_accessors_drawing_saving_and_crops(overfit, detector, tmp_path):
    names = sorted(os.listdir(overfit["images"]))[:2]
    r = detector([os.path.join(overfit["images"], n) for n in names])
    h, w = r.images[0].shape[:2]
    xyxy, xywh, xyxyn, xywhn = r.xyxy[0], r.xywh[0], r.xyxyn[0], r.xywhn[0]
    assert len(xyxy) >= 1 and torch.allclose(xyxyn[:, :4] * torch.tensor([w, h, w, h]), xyxy[:, :4], atol=1e-3)
    assert torch.allclose(xywh[:, 2:4], xyxy[:, 2:4] - xyxy[:, :2]) and torch.equal(xywh[:, 4:], xyxy[:, 4:])
    assert torch.allclose(xywhn[:, :2] * torch.tensor([w, h]), (xyxy[:, :2] + xyxy[:, 2:4]) / 2, atol=1e-3)
    rows = r.rows()[0]
    assert [row["name"] for row in rows] == [detector.names[int(c)] for c in xyxy[:, 5]]
    assert rows[0]["xmin"] == pytest.approx(float(xyxy[0, 0])) and rows[0]["confidence"] >= detector.conf
    text = str(r).splitlines()
    assert text[0].startswith(f"image 1/2: {h}x{w} ") and text[-1].startswith("Speed: ")
    drawn = r.render()
    assert np.abs(np.asarray(drawn[0]).astype(int) - r.images[0]).max() > 100
    saved = r.save(str(tmp_path / "out"))
    assert saved == [str(tmp_path / "out" / os.path.splitext(n)[0]) + ".jpg" for n in names]
    assert all(Image.open(p).size == (im.shape[1], im.shape[0]) for p, im in zip(saved, r.images, strict=True))
    crops = r.crop(str(tmp_path / "out"))
    assert len(crops) == sum(len(b) for b in r.boxes) and all(os.path.isfile(c["path"]) for c in crops)
    box = crops[0]["box"]
    assert crops[0]["im"].size[0] >= box[2] - box[0] and crops[0]["label"].startswith(detector.names[crops[0]["cls"]])
    detector.conf = 0.99  # YOLOv5's way of changing a threshold between calls
    try:
        assert sum(len(b) for b in detector([os.path.join(overfit["images"], n) for n in names]).boxes) < len(crops)
    finally:
        detector.conf = 0.25


def test_an_exported_model_detects_through_the_same_call(overfit, exported, detector):
    """The ONNX file for 1 x 3 x 160 x 160: square letterbox, batches cut to 1, the checkpoint's boxes."""
    names = sorted(os.listdir(overfit["images"]))[:3]
    paths = [os.path.join(overfit["images"], n) for n in names]
    onnx = Detector(exported["fixed"]["path"], device="cpu")
    got, want = onnx(paths), detector(paths)
    assert got.shape == (3, 3, 160, 160) and onnx.names == detector.names
    for g, w, im in zip(got.boxes, want.boxes, got.images, strict=True):
        assert agree(w, g, im.shape[:2])


def test_mistakes_are_one_line_errors(detector, tmp_path):
    (tmp_path / "fake.jpg").write_text("not an image")
    for image, message in [(str(tmp_path / "none.jpg"), "none.jpg: no such file"),
                           (str(tmp_path / "fake.jpg"), "fake.jpg: not an image"),
                           (np.zeros((8, 8, 2), np.uint8), "an image array must be H x W x 3 (RGB), not 8x8x2"),
                           ([], "no images given")]:  # fmt: skip
        with pytest.raises(FastloadError, match=re.escape(message)):
            detector(image)
