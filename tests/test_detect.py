"""`fastload detect` with the model that learned 16 demo images: its boxes land on the labelled objects in original
pixels, an EXIF-rotated or PNG copy gives the same boxes, unusable files are reported and passed over, and the
pictures and label files are where YOLOv5's detect.py puts them."""

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, cli, cli_process, write
from PIL import Image, ImageOps
from torchvision.ops import box_iou

from fastload.cli import main
from fastload.errors import FastloadError
from fastload.loader.draw import annotate, class_colour, save_image
from fastload.loader.files import find_images, scan_images
from yolo.detect import crop_box
from yolo.metrics import non_max_suppression
from yolo.val import label_lines
from yolo.weights import read_weights


def read_labels(path: str) -> np.ndarray:
    with open(path) as f:
        return np.array([[float(v) for v in line.split()] for line in f if line.strip()]).reshape(-1, 6)


def xyxy(rows: np.ndarray) -> np.ndarray:
    """Normalised (cls, cx, cy, w, h, ...) rows -> normalised x1, y1, x2, y2."""
    c, s = rows[:, 1:3], rows[:, 3:5]
    return np.concatenate([c - s / 2, c + s / 2], axis=1)


def found(truth: np.ndarray, pred: np.ndarray, at: float) -> np.ndarray:
    """Per true row: a predicted row of its class overlaps it by more than `at`."""
    if len(truth) == 0 or len(pred) == 0:
        return np.zeros(len(truth), bool)
    same = truth[:, None, 0] == pred[None, :, 0]
    overlap = box_iou(torch.from_numpy(xyxy(truth)), torch.from_numpy(xyxy(pred))).numpy()
    return ((overlap > at) & same).any(axis=1)


@pytest.fixture(scope="module")
def detected(overfit, tmp_path_factory):
    """One `fastload detect` over the 16 training images and a folder of copies and bad files."""
    tmp = tmp_path_factory.mktemp("detect")
    images = overfit["images"]
    first, second, third = sorted(os.listdir(images))[:3]
    extra = tmp / "extra"
    extra.mkdir()
    with Image.open(os.path.join(images, first)) as im:  # stored turned; EXIF orientation 6 shows it upright
        exif = Image.Exif()
        exif[0x0112] = 6
        im.transpose(Image.Transpose.ROTATE_90).save(extra / "rotated.jpg", quality=95, exif=exif)
    with Image.open(os.path.join(images, second)) as im:
        im.save(extra / "copy.png")
    shutil.copy(os.path.join(images, third), extra / third)  # a name the first folder has too
    data = open(os.path.join(images, first), "rb").read()
    write(str(extra / "broken.jpg"), data[: len(data) // 2])
    write(str(extra / "fake.png"), "not a picture")
    result = cli("detect", images, str(extra), "--weights", overfit["weights"], "--imgsz", "160", "--batch", "4",
                 "--project", str(tmp), "--name", "d", "--save-txt", "--save-conf", "--json")  # fmt: skip
    return result | {"first": first, "second": second, "third": third, "extra": str(extra)}


def test_boxes_land_on_the_labelled_objects(overfit, detected):
    """The boxes in the label files (normalised to the original image) find the objects the model learned."""
    hits, total, kept = 0, 0, 0
    for name in sorted(os.listdir(overfit["images"])):
        stem = os.path.splitext(name)[0]
        truth = np.loadtxt(os.path.join(overfit["labels"], stem + ".txt"), ndmin=2).reshape(-1, 5)
        pred = read_labels(os.path.join(detected["labels"], stem + ".txt"))
        assert (pred[:, 5] >= 0.25).all() and (pred[:, 1:5] >= 0).all() and (pred[:, 1:5] <= 1).all()
        hits, total = hits + found(truth, pred, 0.5).sum(), total + len(truth)
        kept += found(pred, truth, 0.5).sum()
        assert len(pred) <= 3 * len(truth) + 2, (name, pred)
    assert hits / total >= 0.8, (hits, total)  # recall at IoU 0.5, class and place
    assert detected["images"] == 19 and detected["detections"] >= 0.8 * total
    assert sum(detected["per_class"].values()) == detected["detections"]
    assert set(detected["per_class"]) <= {"circle", "rectangle", "triangle"}


def test_rotated_and_png_copies_give_the_same_boxes(detected):
    labels = detected["labels"]
    for copy, original in (("rotated", detected["first"]), ("copy", detected["second"])):
        a = read_labels(os.path.join(labels, os.path.splitext(original)[0] + ".txt"))
        b = read_labels(os.path.join(labels, copy + ".txt"))
        confident = a[a[:, 5] > 0.5]
        assert len(confident) > 0 and found(confident, b, 0.8).all(), (copy, a, b)


def test_pictures_have_the_original_size_and_the_boxes(overfit, detected, tmp_path):
    out, expected = detected["out"], str(tmp_path / "expected.jpg")
    third = os.path.splitext(detected["third"])[0]
    names = {*os.listdir(overfit["images"]), "rotated.jpg", "copy.png", f"{third}_2.jpg"}
    assert set(os.listdir(out)) == names | {"labels"}
    assert {s["path"]: s["reason"] for s in detected["skipped"]} == {
        os.path.join(detected["extra"], "broken.jpg"): "truncated JPEG (no end-of-image marker)",
        os.path.join(detected["extra"], "fake.png"): "not an image (unrecognised format)",
    }
    for name in sorted(os.listdir(overfit["images"]))[:4]:
        pred = read_labels(os.path.join(detected["labels"], os.path.splitext(name)[0] + ".txt"))
        with Image.open(os.path.join(overfit["images"], name)) as im, Image.open(os.path.join(out, name)) as pic:
            assert pic.size == im.size
            w, h = im.size
            det = np.concatenate([xyxy(pred) * [w, h, w, h], pred[:, 5:6], pred[:, :1]], axis=1)
            boxed = annotate(im.convert("RGB"), det, ["circle", "rectangle", "triangle"])
            save_image(boxed, expected, 95)
            picture = np.asarray(pic.convert("RGB"), np.int32)
        with Image.open(expected) as drawn:
            assert np.abs(picture - np.asarray(drawn, np.int32)).mean() < 1, name  # the image with these boxes
        # ... drawn in their classes' colours (before JPEG, which blurs a 1-pixel line on these small images)
        cls, (x1, y1, _, y2) = pred[-1, 0], det[-1, :4]  # the box drawn last: no other line covers it
        edge = np.asarray(boxed, np.int32)[int((y1 + y2) / 2), min(int(round(x1)), w - 1)]  # its left side's middle
        assert np.abs(edge - class_colour(cls)).sum() < 30, (name, edge, class_colour(cls))
    with Image.open(os.path.join(detected["extra"], "rotated.jpg")) as im, Image.open(f"{out}/rotated.jpg") as pic:
        assert pic.size == ImageOps.exif_transpose(im).size != im.size


def test_crops_csv_and_drawing_options_as_yolov5s(overfit, tmp_path):
    """--save-crop (YOLOv5's save_one_box regions under crops/<class>/), --save-csv (a row a detection), and
    --hide-labels with --line-thickness 1: the picture is the original with bare 1-pixel boxes."""
    names = ["circle", "rectangle", "triangle"]
    got = cli("detect", overfit["images"], "--weights", overfit["weights"], "--project", str(tmp_path), "--name", "c",
              "--save-txt", "--save-conf", "--save-crop", "--save-csv", "--hide-labels", "--line-thickness", "1",
              "--json")  # fmt: skip
    out = tmp_path / "c"
    with open(got["csv"]) as f:
        table = [line.rstrip("\n").split(",") for line in f]
    assert table[0] == ["Image Name", "Prediction", "Confidence"] and len(table) - 1 == got["detections"] > 16
    crops = {c: sorted(os.listdir(out / "crops" / c)) for c in os.listdir(out / "crops")}
    assert {c: len(files) for c, files in crops.items()} == got["per_class"]
    for name in sorted(os.listdir(overfit["images"]))[:3]:
        root = os.path.splitext(name)[0]
        pred = read_labels(os.path.join(got["labels"], root + ".txt"))
        assert [r for r in table[1:] if r[0] == name] == [[name, names[int(c)], f"{p:.2f}"] for c, p in pred[:, [0, 5]]]
        with Image.open(os.path.join(overfit["images"], name)) as im:
            image = im.convert("RGB")
        w, h = image.size
        det = np.concatenate([xyxy(pred) * [w, h, w, h], pred[:, 5:6], pred[:, :1]], axis=1)
        seen = {}
        for box, cls in zip(det[:, :4], pred[:, 0].astype(int), strict=True):
            seen[cls] = seen.get(cls, 0) + 1
            path = out / "crops" / names[cls] / f"{root}{'' if seen[cls] == 1 else seen[cls]}.jpg"
            x1, y1, x2, y2 = crop_box(box, (h, w))
            with Image.open(path) as crop:  # 2% and 10 pixels around the box, in the image
                assert abs(crop.width - (x2 - x1)) <= 1 and abs(crop.height - (y2 - y1)) <= 1
                assert crop.width >= (box[2] - box[0]) and crop.height >= (box[3] - box[1])
        expected = str(tmp_path / "expected.jpg")
        save_image(annotate(image.copy(), det, names, line=1, labels=False), expected, 95)
        with Image.open(out / name) as pic, Image.open(expected) as drawn:
            picture = np.asarray(pic.convert("RGB"), np.int32)
            assert np.abs(picture - np.asarray(drawn, np.int32)).mean() < 0.5, name
        save_image(annotate(image.copy(), det, names), expected, 95)
        with Image.open(expected) as labelled:
            assert np.abs(picture - np.asarray(labelled, np.int32)).mean() > 1, name  # labels would show


def test_test_time_augmentation_finds_the_same_objects(overfit, detected, tmp_path):
    """`--augment` (YOLOv5's three passes pooled) finds the objects the plain pass finds."""
    got = cli("detect", overfit["images"], "--weights", overfit["weights"], "--imgsz", "160", "--project",
              str(tmp_path), "--name", "t", "--nosave", "--save-txt", "--save-conf", "--augment", "--json")  # fmt: skip
    assert got["augment"] and got["images"] == 16 and not detected["augment"]
    assert all(got["speed_ms"][k] > 0 for k in ("inference", "nms"))  # YOLOv5's per-image times
    for name in sorted(os.listdir(overfit["images"])):
        stem = os.path.splitext(name)[0]
        plain = read_labels(os.path.join(detected["labels"], stem + ".txt"))
        tta = read_labels(os.path.join(got["labels"], stem + ".txt"))
        confident = plain[plain[:, 5] > 0.6]
        assert found(confident, tta, 0.6).all(), (name, plain, tta)


def test_nosave_and_one_line_errors(overfit, detected, tmp_path):
    weights = overfit["weights"]
    got = cli("detect", os.path.join(detected["extra"], "copy.png"), "--weights", weights, "--project", str(tmp_path),
              "--name", "n", "--nosave", "--classes", "0,triangle", "--json")  # fmt: skip
    assert got["images"] == 1 and os.listdir(tmp_path / "n") == [] and got["labels"] is None
    assert got["imgsz"] == 160  # the size the checkpoint was trained at
    assert set(got["per_class"]) <= {"circle", "triangle"}
    bad = tmp_path / "bad"
    write(str(bad / "a.jpg"), b"\xff\xd8 no jpeg")
    mistakes = {
        (str(tmp_path / "nowhere"),): "nowhere: no such file or folder",
        (str(bad),): "a.jpg: not an image (unrecognised format) (no usable image among 1 files)",
        (str(tmp_path / "n"),): "n: no image or video files (.jpg .jpeg",
        (str(bad), "--classes", "x"): "no class 'x' (its classes: circle, rectangle, triangle)",
        (detected["extra"], "--classes", "3"): "no class '3'",
    }
    for args, message in mistakes.items():
        result = CliRunner().invoke(main, ["detect", *args, "--weights", weights])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and message in lines[-1] and "Traceback" not in result.output, (args, lines)


def test_scan_names_and_label_lines(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b, a / "sub"):
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (40, 30)).save(folder / "1.jpg")
    files, skipped = scan_images(find_images([str(a), str(b)]))
    assert files.out_names == ["1.jpg", os.path.join("sub", "1.jpg"), "1_2.jpg"] and skipped == []
    assert files.sizes.tolist() == [[30, 40]] * 3 and files.labels(0).shape == (0, 5)
    det = np.array([[10.0, 5.0, 30.0, 25.0, 0.9, 2.0]])
    assert label_lines(det, (30, 40), False) == "2 0.5 0.5 0.5 0.666667\n"
    assert label_lines(det, (30, 40), True) == "2 0.5 0.5 0.5 0.666667 0.9\n"


def test_sources_as_yolov5_takes_them_globs_lists_and_urls(tmp_path, monkeypatch):
    """YOLOv5's detect.py sources besides files and folders: a glob (`**` any depth), a .txt list (a line a source,
    from here or from the list's folder), an image or video URL fetched to its file name here (an error page is not
    kept);
    video files go to their own list (without one they are an error that says what to do); a webcam or a stream is
    a one-line error."""
    photos, work = tmp_path / "photos", tmp_path / "work"
    for folder in (photos / "sub", work):
        folder.mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        Image.new("RGB", (40, 30)).save(photos / name)
    (photos / "notes.md").write_text("not an image")
    (photos / "page.jpg.html").write_text("<html>not found</html>")
    monkeypatch.chdir(work)
    assert find_images([str(photos / "*.jpg")]) == [(str(photos / "a.jpg"), "a.jpg")]
    assert [n for _, n in find_images([str(photos / "**" / "*")])] == ["a.jpg", "b.png", "c.jpg"]
    (photos / "list.txt").write_text("a.jpg\n\nsub\n" + str(photos / "b.png") + "\n")  # relative to the list
    assert [n for _, n in find_images([str(photos / "list.txt")])] == ["a.jpg", "c.jpg", "b.png"]
    got = find_images([f"file://{photos}/sub/c.jpg"])
    assert got == [("c.jpg", "c.jpg")] and (work / "c.jpg").read_bytes() == (photos / "sub" / "c.jpg").read_bytes()
    os.remove(photos / "sub" / "c.jpg")
    assert find_images([f"file://{photos}/sub/c.jpg"]) == [("c.jpg", "c.jpg")]  # the copy here: not fetched again
    shutil.copy(photos / "page.jpg.html", photos / "page.jpg")
    with pytest.raises(FastloadError, match=r"page.jpg: not an image"):
        find_images([f"file://{photos}/page.jpg"])
    assert sorted(os.listdir(work)) == ["c.jpg"]
    (photos / "sub" / "clip.MP4").write_bytes(b"")
    videos = []
    assert find_images([str(photos / "sub"), str(photos / "**" / "clip.*")], videos) == []  # none of them an image
    assert videos == [(str(photos / "sub" / "clip.MP4"), "clip.MP4")] * 2
    import av

    with av.open(str(photos / "real.mp4"), "w") as out:  # a video URL: fetched as YOLOv5's check_file fetches it
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(2):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode())
    videos = []
    assert find_images([f"file://{photos}/real.mp4"], videos) == [] and videos == [("real.mp4", "real.mp4")]
    shutil.copy(photos / "page.jpg.html", photos / "fake.mp4")
    with pytest.raises(FastloadError, match=r"fake.mp4: not a video FFmpeg decodes"):
        find_images([f"file://{photos}/fake.mp4"], [])
    assert sorted(os.listdir(work)) == ["c.jpg", "real.mp4"]  # what is no video is not kept
    mistakes = {
        str(photos / "sub" / "clip.MP4"): "clip.MP4: a video; extract its frames (ffmpeg -i",
        str(photos / "sub"): "sub: no image files (",
        "0": "0: a webcam or stream; this reads image files only",
        "rtsp://camera/live": "rtsp://camera/live: a webcam or stream",
        str(photos / "*.bmp"): "*.bmp: no image files match",
        str(photos / "notes.md"): None,  # a file is taken as given: the scan reports it
    }
    for src, message in mistakes.items():
        if message is None:
            assert find_images([src]) == [(src, "notes.md")]
            continue
        with pytest.raises(FastloadError, match=re.escape(message)):
            find_images([src])
    (photos / "empty.txt").write_text("\n")
    with pytest.raises(FastloadError, match="empty.txt: an empty list of images"):
        find_images([str(photos / "empty.txt")])


def test_single_label_nms_keeps_each_box_best_class():
    """detect.py's NMS: one row per box, its best class; `classes` filters; `agnostic` suppresses across classes."""
    box = [50.0, 50.0, 20.0, 20.0]
    pred = torch.tensor([[box + [0.9, 0.2, 0.7, 0.6], [51.0, 50.0, 20.0, 20.0, 0.8, 0.9, 0.1, 0.1]]])
    (multi,) = non_max_suppression(pred, 0.25, 0.45)
    (single,) = non_max_suppression(pred, 0.25, 0.45, multi_label=False)
    assert len(multi) == 3 and single[:, 5].tolist() == [0.0, 1.0]  # 0.72: box 2, class 0; 0.63: box 1, class 1
    assert torch.allclose(single[:, 4], torch.tensor([0.72, 0.63]))
    (only,) = non_max_suppression(pred, 0.25, 0.45, multi_label=False, classes=[1])
    (agnostic,) = non_max_suppression(pred, 0.25, 0.45, multi_label=False, agnostic=True)
    assert only[:, 5].tolist() == [1.0] and agnostic[:, 5].tolist() == [0.0]


def test_spawned_workers_read_the_files_as_forked_ones_do(demo_dataset):
    """On CUDA (or once CUDA is up) the loader's workers are spawned: the files must travel to them by pickle."""
    from fastload.loader.val_loader import ValLoader

    files, _ = scan_images(find_images([os.path.join(demo_dataset, "images", "train")]))
    batches = {}
    for method in ("fork", "spawn"):
        loader = ValLoader(files, 96, 8, pad=0.0, workers=1, antialias=False, start_method=method)
        batches[method] = [b.images for b in loader]
    assert len(batches["fork"]) == 3 and all(
        torch.equal(a, b) for a, b in zip(batches["fork"], batches["spawn"], strict=True)
    )


def test_a_video_gets_its_boxes_frame_by_frame_as_the_same_frame_as_an_image(overfit, tmp_path):
    """A video (10 frames of a training image, MPEG-4 at 10 fps, in batches of 4) beside one of its frames as a PNG
    and a file that is no video: each frame's boxes land on the image's labelled objects, the PNG's boxes are its
    frame's (the video's letterbox is the images'), the annotated .mp4 has every frame at the source's rate, and
    labels, crops and CSV rows are named as YOLOv5 names a video's."""
    import av

    images, labels = overfit["images"], overfit["labels"]
    name = next(n for n in sorted(os.listdir(images)) if all(v % 2 == 0 for v in Image.open(f"{images}/{n}").size))
    picture = np.asarray(Image.open(os.path.join(images, name)).convert("RGB"))
    truth = np.loadtxt(os.path.join(labels, os.path.splitext(name)[0] + ".txt"), ndmin=2).reshape(-1, 5)
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.height, stream.width = picture.shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "1"}
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(clip)) as decoded:
        frames = [f.to_ndarray(format="rgb24") for f in decoded.decode(video=0)]
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(frames[6]).save(extra / "frame7.png")
    (extra / "fake.mp4").write_text("not a video")
    got = cli(
        "detect",
        str(clip),
        str(extra),
        "--weights",
        overfit["weights"],
        "--batch",
        "4",
        "--project",
        str(tmp_path),
        "--name",
        "v",
        "--save-txt",
        "--save-conf",
        "--save-crop",
        "--save-csv",
        "--json",
    )
    out = tmp_path / "v"
    assert got["images"] == 1 and got["frames"] == 10
    assert [s["path"] for s in got["skipped"]] == [str(extra / "fake.mp4")]
    assert got["videos"] == [{"path": str(clip), "out": str(out / "clip.mp4"), "frames": 10, "error": None}]
    per_frame = [read_labels(out / "labels" / f"clip_{k}.txt") for k in range(1, 11)]
    assert all(found(truth, pred, 0.5).mean() >= 0.8 for pred in per_frame), (truth, per_frame)
    as_image = read_labels(out / "labels" / "frame7.txt")
    assert len(as_image) == len(per_frame[6]) and found(as_image, per_frame[6], 0.95).all()
    assert np.abs(as_image[:, 5] - per_frame[6][:, 5]).max() < 0.05  # the same confidences, near enough
    with av.open(str(out / "clip.mp4")) as written:
        stream = written.streams.video[0]
        drawn = [f.to_ndarray(format="rgb24") for f in written.decode(stream)]
        assert stream.average_rate == 10 and len(drawn) == 10 and drawn[0].shape == picture.shape
    assert np.abs(drawn[0].astype(int) - frames[0]).max() > 100  # the boxes are drawn on it
    cls = int(per_frame[0][0, 0])
    crops = sorted(n for n in os.listdir(out / "crops" / read_weights(overfit["weights"]).names[cls]) if "clip" in n)
    per_class = sum(int((p[:, 0] == cls).sum()) for p in per_frame)
    assert crops == sorted(["clip.jpg"] + [f"clip{k}.jpg" for k in range(2, per_class + 1)])  # YOLOv5's increment
    with open(out / "predictions.csv") as f:
        rows = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert rows.count("clip.mp4") == sum(len(p) for p in per_frame) and rows.count("frame7.png") == len(as_image)
    got = cli("detect", str(clip), "--weights", overfit["weights"], "--project", str(tmp_path), "--name", "n",
              "--nosave", "--save-txt", "--save-conf", "--vid-stride", "3", "--json")  # fmt: skip
    assert got["videos"][0]["out"] is None and got["frames"] == 3 and os.listdir(tmp_path / "n") == ["labels"]
    assert sorted(os.listdir(tmp_path / "n" / "labels")) == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]
    again = [read_labels(tmp_path / "n" / "labels" / f"clip_{k}.txt") for k in range(1, 4)]  # frames 3, 6, 9
    assert all(
        a.shape == b.shape and np.allclose(a[:, :5], b[:, :5], atol=1e-4)
        for a, b in zip(again, per_frame[2::3], strict=True)
    )


def test_video_frames_come_in_batches_and_every_nth_as_vid_stride(tmp_path):
    """VideoFrames: frames in order, batches of `batch` (the last shorter), each letterboxed into the stride's
    rectangle with YOLOv5's grey; `every` 3 takes frames 3, 6, 9 (from 1), as YOLOv5's --vid-stride; `square`
    letterboxes into imgsz x imgsz."""
    import av

    from fastload.loader.video import VideoFrames

    path = tmp_path / "count.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.options = 96, 64, "yuv420p", {"qscale": "1"}
        for k in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * k, np.uint8), format="rgb24")))
        out.mux(stream.encode())
    video = VideoFrames(str(path), 96, 4, stride=32)
    assert (video.size, video.frames, video.fps, video.shape) == ((64, 96), 10, 25, (64, 96))
    batches = list(video)
    assert [len(b.indices) for b in batches] == [4, 4, 2] and video.decoded == 10
    levels = np.concatenate([b.images[:, 0, 32, 48].numpy() for b in batches])
    assert np.abs(levels.astype(int) - 20 * np.arange(10)).max() <= 6  # YUV 4:2:0 rounding; frames are 20 apart
    video = VideoFrames(str(path), 64, 8, stride=32, every=3)
    (b,) = list(video)
    assert b.indices.tolist() == [0, 1, 2] and video.frames == 3 and b.images.shape == (3, 3, 64, 64)
    assert np.abs(b.images[:, 0, 32, 32].numpy().astype(int) - [40, 100, 160]).max() <= 6  # frames 3, 6, 9
    assert (b.images[:, :, :10] == 114).all() and b.pad.tolist() == [[10, 0]] * 3  # 96x64 at 64: 64x43, 10 rows down
    square = VideoFrames(str(path), 96, 10, stride=32, square=True)  # for a model exported for 96x96 inputs
    (b,) = list(square)
    assert square.shape == (96, 96) and b.images.shape == (10, 3, 96, 96) and b.pad.tolist() == [[16, 0]] * 10
    assert (b.images[:, :, :16] == 114).all() and (b.images[:, :, 80:] == 114).all()


def test_a_phone_video_stored_sideways_is_turned_upright_by_its_display_matrix(overfit, tmp_path):
    """A portrait phone video is stored landscape with a rotation in its display matrix; OpenCV turns it upright for
    YOLOv5, and so does VideoFrames: a training image stored turned a quarter either way (with the rotation that
    undoes it) decodes as the image, and detect finds its labelled objects and writes the upright .mp4."""
    import av

    from fastload.loader.video import VideoFrames, probe

    images, labels = overfit["images"], overfit["labels"]
    name = next(n for n in sorted(os.listdir(images)) if all(v % 2 == 0 for v in Image.open(f"{images}/{n}").size))
    picture = np.asarray(Image.open(os.path.join(images, name)).convert("RGB"))
    truth = np.loadtxt(os.path.join(labels, os.path.splitext(name)[0] + ".txt"), ndmin=2).reshape(-1, 5)
    h, w = picture.shape[:2]
    for rotation in (-90, 90, 180):  # counter-clockwise degrees that show the stored frames upright
        clip = tmp_path / f"phone{rotation}.mp4"
        stored = np.ascontiguousarray(np.rot90(picture, -rotation // 90))
        with av.open(str(clip), "w") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.height, stream.width = stored.shape[:2]
            stream.pix_fmt, stream.options = "yuv420p", {"qscale": "1"}
            stream.set_display_rotation(rotation)
            for _ in range(3):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
            out.mux(stream.encode())
        assert probe(str(clip))[:2] == (h, w) and probe(str(clip))[4] == rotation % 360
        video = VideoFrames(str(clip), 160, 4, stride=32)
        (b,) = list(video)
        frame = video.frames_of(b)[0]
        assert video.size == (h, w) and frame.shape == picture.shape
        assert np.abs(frame.astype(int) - picture).mean() < 8, rotation  # the picture, up to MPEG-4's loss
    got = cli("detect", str(tmp_path / "phone-90.mp4"), "--weights", overfit["weights"], "--project", str(tmp_path),
              "--name", "d", "--save-txt", "--save-conf", "--json")  # fmt: skip
    assert got["frames"] == 3 and got["videos"][0]["error"] is None
    per_frame = [read_labels(tmp_path / "d" / "labels" / f"phone-90_{k}.txt") for k in range(1, 4)]
    assert all(found(truth, pred, 0.5).mean() >= 0.8 for pred in per_frame), (truth, per_frame)
    with av.open(str(tmp_path / "d" / "phone-90.mp4")) as written:
        assert next(written.decode(video=0)).to_ndarray(format="rgb24").shape == picture.shape


class LiveStream(http.server.BaseHTTPRequestHandler):
    """An MPEG-TS stream made while it is sent, paced at `fps`: `frames` of `picture` (0: until the client leaves)."""

    picture, frames, fps = np.zeros((32, 32, 3), np.uint8), 0, 20

    def do_GET(self):
        import av

        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        with (
            contextlib.suppress(BrokenPipeError, ConnectionResetError),
            av.open(self.wfile, "w", format="mpegts") as out,
        ):
            stream = out.add_stream("mpeg4", rate=self.fps)
            stream.height, stream.width = self.picture.shape[:2]
            stream.pix_fmt, stream.options = "yuv420p", {"qscale": "1"}
            k = 0
            while not self.frames or k < self.frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(self.picture, format="rgb24")))
                self.wfile.flush()
                k += 1
                time.sleep(1 / self.fps)
            out.mux(stream.encode())

    def log_message(self, *_):
        pass


@contextlib.contextmanager
def live_stream(picture: np.ndarray, frames: int = 0, fps: int = 20):
    """The URL of a LiveStream served from a thread here (no media suffix: a stream to YOLOv5 and fastload)."""
    handler = type("Live", (LiveStream,), {"picture": picture, "frames": frames, "fps": fps})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/live"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stream_is_read_live_its_newest_frame_each_time(tmp_path):
    """StreamFrames: frames come one at a time, each the newest (a consumer slower than the stream drops those in
    between, counted), upright and whole; `stop` ends the iteration from another thread; what is no stream is
    BadInput; sources are sorted as YOLOv5 sorts them (camera numbers, stream URLs, .streams lists)."""
    from fastload.errors import BadInput
    from fastload.loader.stream import StreamFrames

    picture = np.zeros((96, 128, 3), np.uint8)
    picture[:, :32] = 255
    with live_stream(picture, frames=30, fps=20) as url:
        stream = StreamFrames(url, 128, stride=32)
        assert stream.size == (96, 128) and stream.fps == 20 and stream.shape == (96, 128)
        taken = []
        for b in stream:
            (frame,) = stream.frames_of(b)
            assert b.images.shape == (1, 3, 96, 128) and np.abs(frame.astype(int) - picture).mean() < 4
            taken.append(int(b.indices[0]))
            time.sleep(0.15)  # three frames' time: the ones in between are dropped
        assert taken == list(range(len(taken))) and stream.decoded == len(taken) >= 5
        assert stream.dropped >= 5 and stream.decoded + stream.dropped <= stream.read <= 30
    with live_stream(picture, frames=0) as url:
        stream = StreamFrames(url, 128, stride=32)
        threading.Timer(0.5, stream.stop.set).start()
        assert 1 <= len(list(stream)) <= 15  # ended by `stop`, though the stream goes on
    stop = threading.Event()  # shared by two streams, as detect shares it: one that ends leaves the other reading
    with live_stream(picture, frames=20) as short, live_stream(picture, frames=60) as long:
        streams = [StreamFrames(url, 128, stride=32, stop=stop) for url in (short, long)]
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda s: len(list(s)), streams))
        assert counts[0] <= 20 and counts[1] >= counts[0] + 25 and not stop.is_set(), counts
    with pytest.raises(BadInput, match="cannot read this stream"):
        StreamFrames("http://127.0.0.1:9/live", 128)  # nothing listens there
    (tmp_path / "cams.streams").write_text("rtsp://a/one\n# a comment\n\nrtmp://b/two\n")
    streams, videos = [], []
    assert find_images(["0", "rtsp://cam/live", "http://host:8080/feed", str(tmp_path / "cams.streams")], videos,
                       streams) == [] and not videos  # fmt: skip
    assert streams == ["0", "rtsp://cam/live", "http://host:8080/feed", "rtsp://a/one", "rtmp://b/two"]
    with pytest.raises(FastloadError, match="a YouTube page, not a stream"):
        find_images(["https://youtu.be/LNwODJXcvt4"], [], [])


def test_detect_on_a_stream_until_ctrl_c_keeps_its_video_and_labels(overfit, tmp_path):
    """`fastload detect URL` on an endless stream of a training image, stopped by Ctrl-C (SIGINT to the process
    group, as a terminal sends it): exit 0, JSON `interrupted`, the annotated .mp4 finished with every frame taken,
    a label file a frame, and the labelled objects found in each; a stream that cannot be opened is a one-line
    error."""
    images, labels = overfit["images"], overfit["labels"]
    name = next(n for n in sorted(os.listdir(images)) if all(v % 2 == 0 for v in Image.open(f"{images}/{n}").size))
    picture = np.asarray(Image.open(os.path.join(images, name)).convert("RGB"))
    truth = np.loadtxt(os.path.join(labels, os.path.splitext(name)[0] + ".txt"), ndmin=2).reshape(-1, 5)
    out = tmp_path / "s"
    with live_stream(picture, frames=0, fps=10) as url:
        cmd = [sys.executable, "-m", "fastload", "detect", url, "--weights", overfit["weights"], "--project",
               str(tmp_path), "--name", "s", "--save-txt", "--save-conf", "--device", "cpu", "--json"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and len(os.listdir(out / "labels") if (out / "labels").exists() else ()) < 3:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    got = json.loads(stdout)
    (live,) = got["streams"]
    assert got["interrupted"] and "Ctrl-C: stopping the streams" in err and got["videos"] == []
    assert live["path"] == url and live["out"] == str(out / "live.mp4") and got["frames"] == live["frames"] >= 3
    files = sorted(os.listdir(out / "labels"))
    assert files == sorted(f"live_{k}.txt" for k in range(1, live["frames"] + 1))
    per_frame = [read_labels(out / "labels" / f) for f in files]
    assert all(found(truth, pred, 0.5).mean() >= 0.8 for pred in per_frame), (truth, per_frame)
    import av

    with av.open(str(out / "live.mp4")) as written:
        assert len(list(written.decode(video=0))) == live["frames"]
    result = cli_process("detect", "http://127.0.0.1:9/live", "--weights", overfit["weights"], "--project",
                         str(tmp_path))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "http://127.0.0.1:9/live: cannot read this stream" in result.stderr.strip().splitlines()[-1]
