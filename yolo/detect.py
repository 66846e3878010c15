"""Detection on image and video files, as YOLOv5's detect.py: images decoded and letterboxed by the validation
loader (DALI; on the GPU with a CUDA device), video frames by FFmpeg (fastload.loader.video), the model, NMS with
one class per box, boxes in original pixels. It writes the pictures and videos with their boxes and, with
`save_txt`, one YOLO label file per image (and per video frame: `<video>_<frame>.txt`, from 1, as YOLOv5). A
segmentation model's masks (at the original's resolution, YOLOv5's --retina-masks) are drawn under the boxes, and
its label files hold their outlines (YOLO segment lines), as YOLOv5's segment/predict.py.

    result = detect("runs/train/exp/weights/best.pt", ["photos/"], DetectOptions(out="runs/detect/exp"))
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from fastload.errors import BadInput, FastloadError
from fastload.loader.draw import annotate, save_image
from fastload.loader.files import find_images, scan_images, unique_names
from fastload.loader.pictures import PictureLoader
from fastload.loader.stream import StreamFrames, stream_name
from fastload.loader.val_loader import ValLoader
from fastload.loader.video import VideoFrames, VideoWriter
from fastload.pack.classes import class_id
from fastload.pack.tiles import Tiling
from fastload.store.tempfiles import partial_path, write_atomic
from yolo.classify import classify_arch
from yolo.ensemble import as_given, label, models
from yolo.exported import inference_model, input_side, needs_checkpoint, read_model, square_only
from yolo.model import is_segment
from yolo.rundir import new_run_dir
from yolo.segment import BoxMask, batch_native_masks, polygon_lines
from yolo.sliced import MERGE, Found, Merging, Slicer, sliced, tile_count, tile_json, tile_side, tiled_records
from yolo.train import resolve_device, say
from yolo.val import Speed, label_lines, predict
from yolo.visualize import FeatureMaps, save_features

PICTURES = (".jpg", ".jpeg", ".png")  # pictures keep these extensions; others are written as .jpg


@dataclass
class DetectOptions:
    out: str = "runs/detect/exp"  # taken: exp2, exp3, ... as YOLOv5 (the result's `out` says which)
    exist_ok: bool = False  # write into `out` even if it exists (YOLOv5's --exist-ok)
    imgsz: int = 0  # long side, rounded up to a multiple of the stride (0: a fastload checkpoint's size, else 640)
    conf: float = 0.25  # YOLOv5 detect.py's thresholds
    iou: float = 0.45
    max_det: int = 1000
    classes: list[int | str] | None = None  # keep only these classes (ids, or names the model has)
    agnostic: bool = False  # suppress overlapping boxes across classes
    augment: bool = False  # YOLOv5's test-time augmentation (yolo.tta)
    batch: int = 16  # images per batch, grouped by aspect ratio (YOLOv5's detect.py runs one at a time)
    vid_stride: int = 1  # of a video, every Nth frame only (YOLOv5's --vid-stride)
    device: str = ""
    workers: int = 2  # DALI source processes (reading, and converting what is not a plain JPEG)
    save_images: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False  # crops/<class>/<image>.jpg (then <image>2.jpg, ...), as YOLOv5's save_one_box
    save_csv: bool = False  # predictions.csv: image, class name, confidence per detection (YOLOv5's --save-csv)
    line_thickness: int = 0  # box lines in pixels (0: by the picture's size)
    hide_labels: bool = False
    hide_conf: bool = False
    visualize: bool = False  # each layer's output per image: <name>/stage<i>_<Module>_features.png and .npy (YOLOv5's)
    tile: int | str = 0  # > 0: sliced inference, a larger image by its tiles of this side, merged (yolo.sliced);
    # "auto": the side of the tiles the model learned from (train --tile)
    tile_overlap: float = 0.2  # the share of a tile's side its neighbours overlap
    tile_whole: bool = False  # with tile: a larger image also whole, shrunk to imgsz (SAHI's standard pass)
    merging: Merging = MERGE  # with tile: how an object's detections from overlapping tiles join (SAHI's postprocess)


def picture_path(out: str, name: str) -> str:
    root, ext = os.path.splitext(name)
    return os.path.join(out, name if ext.lower() in PICTURES else root + ".jpg")


def crop_box(box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """YOLOv5's save_one_box region for a box (x1, y1, x2, y2): 2% and 10 pixels larger, clipped to the image of
    `size` (h, w), whole pixels."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.02 + 10, (y2 - y1) * 1.02 + 10
    H, W = size
    return (int(min(max(cx - w / 2, 0), W)), int(min(max(cy - h / 2, 0), H)), int(min(max(cx + w / 2, 0), W)),
            int(min(max(cy + h / 2, 0), H)))  # fmt: skip


def save_one_box(image: Image.Image, box, path: str = "") -> Image.Image:
    """YOLOv5's save_one_box: the region `crop_box` gives for `box` in `image`, written to `path` (atomically, with
    its folder) when one is given."""
    crop = image.crop(crop_box(box, (image.height, image.width)))
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_image(crop, path, quality=95)
    return crop


def crop_paths(out: str, name: str, det: np.ndarray, names: list[str], seen: Counter | None = None) -> list[str]:
    """crops/<class>/<name>.jpg for each detection, then <name>2.jpg, ... within a class (YOLOv5's increment);
    `seen`: the crops of each class so far under this name (a video's earlier frames), counted on."""
    root, seen, paths = os.path.splitext(name)[0], Counter() if seen is None else seen, []
    for cls in det[:, 5].astype(int):
        seen[cls] += 1
        suffix = "" if seen[cls] == 1 else str(seen[cls])
        paths.append(os.path.join(out, "crops", names[cls], f"{root}{suffix}.jpg"))
    return paths


def render_file(source: str, det: np.ndarray, names: list[str], picture: str, crops: list[str], opts,
                masks: list[BoxMask] | None = None) -> None:  # fmt: skip
    """From the original file, upright: its crops (before any drawing) and the picture with its detections (and
    their `masks`) drawn, each saved atomically."""
    with Image.open(source) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    for box, path in zip(det[:, :4], crops, strict=True) if crops else ():
        save_one_box(image, box, path)
    if picture:
        drawn = annotate(image, det, names, opts.line_thickness, not opts.hide_labels, not opts.hide_conf, masks)
        save_image(drawn, picture, quality=95)  # as cv2.imwrite in YOLOv5's detect.py


def per_image(model, loader, opts: DetectOptions, speed: Speed, maps: FeatureMaps | None = None):
    """predictions() image by image: (its place in the batch, its record index, detections, masks)."""
    for b, _, _, _, original, masks in predictions(model, loader, opts, speed, maps):
        for j, (i, det) in enumerate(zip(b.indices, original, strict=True)):
            yield j, int(i), det, masks[j]


def sliced_per_image(model, loader, pictures: PictureLoader, tiling: Tiling, opts: DetectOptions, speed: Speed):
    """per_image() with `--tile`: the images that fit a tile as `loader` has them (with --tile-whole the others
    too), the others (`pictures`) decoded whole, cut into their tiles on the device and merged (yolo.sliced)."""
    whole = ((i, (det, masks)) for _, i, det, masks in per_image(model, loader, opts, speed))
    slicer = Slicer(tiling, loader.imgsz, loader.stride, not loader.rect, loader.device,
                    tile_predictions(model, opts, speed), opts.agnostic, opts.max_det, opts.merging)  # fmt: skip
    for i, (det, masks) in sliced(whole, slicer.stream(pictures), pictures.records, opts.tile_whole, opts.max_det,
                                  opts.agnostic, opts.merging):  # fmt: skip
        yield 0, i, det, masks


def sliced_arrays(model, arrays: list[np.ndarray], imgsz: int, stride: int, square: bool, opts: DetectOptions,
                  speed: Speed) -> list[Found]:  # fmt: skip
    """Each decoded picture's (H x W x 3) detections by its tiles and their masks (Slicer.stream: the tiles of
    all of them batched together), as `detect --tile` makes them: what video frames and the Python detector run
    with --tile."""
    tiling, device = Tiling(opts.tile, opts.tile_overlap), next(model.parameters(), torch.empty(0)).device
    device = str(getattr(model, "device", device))  # an exported model says its device
    slicer = Slicer(tiling, imgsz, stride, square, device, tile_predictions(model, opts, speed), opts.agnostic,
                    opts.max_det, opts.merging)  # fmt: skip
    return [found for _, found in slicer.stream(enumerate(arrays))]


def tile_predictions(model, opts: DetectOptions, speed: Speed):
    """A batch of tiles -> each tile's detections in its pixels and their masks (a segmentation model's, when they
    are drawn or written; else None), with detect.py's NMS (Slicer's `detect`)."""

    def run(batch):
        *_, original, masks = next(predictions(model, [batch], opts, speed))
        return list(zip(original, masks, strict=True))

    return run


def predictions(model, loader, opts: DetectOptions, speed: Speed, maps: FeatureMaps | None = None):
    """yolo.val.predict with detect.py's NMS: each box's best class, `--classes`, `--agnostic-nms`; `maps` (with
    --visualize) hold each batch's layer outputs until the next batch. Yields predict's items and, per image, its
    detections' masks in original pixels (yolo.segment.native_masks; None for a detection model, or when neither
    pictures nor label files are written)."""
    for b, x, raw, detections, original in predict(model, loader, opts.conf, opts.iou, opts.max_det, opts.augment,
                                                   speed, multi_label=False, classes=opts.classes,
                                                   agnostic=opts.agnostic):  # fmt: skip
        masks = [None] * len(original)
        if isinstance(raw, tuple) and (opts.save_images or opts.save_txt):  # a segmentation model's, to draw or write
            masks = batch_native_masks(raw[1], detections, original, b, x.shape[-2:])
        yield b, x, raw, detections, original, masks
        if maps is not None:
            maps.clear()


@dataclass
class Results:
    """Where detections go besides the pictures: label files, the CSV's rows, the per-class counts."""

    out: str
    names: list[str]
    opts: DetectOptions
    table: object = None  # a csv.writer, with --save-csv
    maps: FeatureMaps | None = None  # with --visualize
    per_class: Counter = field(default_factory=Counter)
    visualized: int = 0

    def visualize(self, j: int, label: str) -> None:
        """With --visualize: image `j` of the batch's layer outputs in <label>/ (YOLOv5's folder per image)."""
        if self.maps is None:
            return
        for stage, kind, x in self.maps.of_image(j):
            save_features(x, kind, stage, os.path.join(self.out, label))
        self.visualized += 1

    def record(self, det: np.ndarray, size, label: str, image: str, masks: list[BoxMask] | None = None) -> None:
        """One image's (or frame's) detections, in original pixels of `size` (h, w): labels/<label>.txt (with
        `masks`, a segmentation model's: their outlines as YOLO segment lines) and the CSV's rows for `image`."""
        self.per_class.update(int(c) for c in det[:, 5])
        if self.opts.save_txt:
            path = os.path.join(self.out, "labels", label + ".txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lines = label_lines(det, size, self.opts.save_conf) if masks is None else polygon_lines(
                det, masks, size, self.opts.save_conf)  # fmt: skip
            write_atomic(path, lines.encode())
        if self.table is not None:
            self.table.writerows([image, self.names[int(c)], f"{p:.2f}"] for p, c in det[:, 4:6])


def detect_video(model, video: VideoFrames, name: str, results: Results, speed: Speed, bar) -> dict:
    """One video's frames through the model: its annotated copy `name` (.mp4) in the output folder, a label file
    per frame, crops as YOLOv5's (<video>.jpg, <video>2.jpg, ... over all frames)."""
    opts, out = results.opts, results.out
    stem, source = os.path.splitext(name)[0], os.path.basename(video.path)
    target = os.path.join(out, name) if opts.save_images else ""
    if target:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    crops_seen: Counter = Counter()
    if opts.tile:  # each batch's frames by their tiles (the batch holds no letterboxed frames: video.sliced)
        found = ((b, sliced_arrays(model, video.frames_of(b), video.imgsz, video.stride, video.square, opts, speed))
                 for b in video)  # fmt: skip
        batches = ((b, [det for det, _ in f], [masks for _, masks in f]) for b, f in found)
    else:
        batches = ((b, original, masks) for b, _, _, _, original, masks in predictions(model, video, opts, speed,
                                                                                       results.maps))  # fmt: skip
    with VideoWriter(target, video.fps, video.size) if target else contextlib.nullcontext() as writer:
        for b, original, masks in batches:
            for j, (i, frame, det) in enumerate(zip(b.indices, video.frames_of(b), original, strict=True)):
                results.record(det, video.size, f"{stem}_{int(i) + 1}", source, masks[j])
                results.visualize(j, f"{stem}_{int(i) + 1}")
                image = Image.fromarray(frame) if opts.save_crop or target else None
                crops = crop_paths(out, stem, det, results.names, crops_seen) if opts.save_crop else []
                for box, path in zip(det[:, :4], crops, strict=False):  # crops: one a box, or none
                    save_one_box(image, box, path)
                if target:
                    drawn = annotate(image, det, results.names, opts.line_thickness, not opts.hide_labels,
                                     not opts.hide_conf, masks[j])  # fmt: skip
                    writer.write(np.asarray(drawn))
            bar.update(len(b.indices))
    if video.error:
        say(f"{video.path}: {video.error} (the frames before it are kept)")
    return {"path": video.path, "out": target or None, "frames": video.decoded, "error": video.error or None}


def detect_streams(model, live: list, results: Results, speed: Speed, bar, stop: threading.Event) -> tuple[list, bool]:
    """The live sources (StreamFrames, their names), each as `detect_video` in a thread of its own, all at once (as
    YOLOv5's LoadStreams), until they end or Ctrl-C: that sets `stop`, each stream ends after the frame in hand, and
    its video and files are kept. Returns (per stream as detect_video's, with `read` and `dropped`; whether Ctrl-C
    stopped them)."""
    if not live:
        return [], False
    speeds, interrupted = [Speed(speed.device) for _ in live], False
    with ThreadPoolExecutor(len(live), thread_name_prefix="stream") as pool:
        jobs = [
            pool.submit(detect_video, model, s, name, results, sp, bar)
            for (s, name), sp in zip(live, speeds, strict=True)
        ]
        while True:
            try:
                if not wait(jobs, timeout=0.5).not_done:  # short waits: Ctrl-C reaches the main thread here
                    break
            except KeyboardInterrupt:
                if not interrupted:
                    say("Ctrl-C: stopping the streams (what was written is kept)")
                interrupted = True
                stop.set()
    for sp in speeds:
        speed.add(sp)
    return [
        job.result() | {"read": s.read, "dropped": s.dropped} for job, (s, _) in zip(jobs, live, strict=True)
    ], interrupted


def detect(weights: str | Sequence[str], sources: list[str], opts: DetectOptions, progress: bool = True) -> dict:
    """Run the model in `weights` (a fastload or YOLOv5 checkpoint, or an exported .onnx or .torchscript; several
    checkpoints: YOLOv5's ensemble) over the images and videos in `sources` (fastload.loader.files.find_images);
    returns the counts and where the results went. Unusable files are reported and passed over."""
    t0 = time.perf_counter()
    w, paths, weights = read_model(weights, say), weights, label(weights)
    if classify_arch(getattr(w, "arch", "")):  # YOLOv5's classify/predict.py
        from yolo.classify_predict import classify_files

        return classify_files(w, weights, sources, opts, progress)
    needs_checkpoint(w, opts.augment, opts.visualize)
    opts = replace(opts, tile=tile_side(opts.tile, w.config, weights))  # `auto`: the tiles it learned from
    if opts.classes:  # names or ids, as ids
        opts = replace(opts, classes=[class_id(str(c), list(w.names), f"--classes: {weights}") for c in opts.classes])
    device = resolve_device(opts.device)
    listed: list[tuple[str, str]] = []
    streams: list[str] = []
    found = find_images(sources, listed, streams)
    if streams and opts.visualize:
        raise FastloadError(f"{streams[0]}: --visualize writes a folder per frame: not for a live stream")
    batch = 1 if opts.visualize else opts.batch  # the layer outputs of one image at a time, as YOLOv5's detect.py
    with tqdm(total=len(found), desc="scan", unit="img", disable=not progress or None, leave=False) as bar:
        files, skipped = scan_images(found, opts.workers, bar.update, required=not (listed or streams))
    imgsz, square = input_side(w, opts.imgsz, say), square_only(w)
    learned = w.config.get("tile")  # trained on a dataset's tiles (train --tile)
    if learned and not opts.tile and len(files) and files.sizes.max() > learned:
        say(f"note: {weights} learned from tiles of {learned} px; --tile {learned} runs it on the larger pictures "
            "tile by tile, at the scale it learned")  # fmt: skip
    videos = []  # (VideoFrames, its name in the output folder: .mp4, unique)
    for (path, _), name in zip(listed, unique_names([os.path.splitext(n)[0] + ".mp4" for _, n in listed]), strict=True):
        try:
            frames = VideoFrames(path, imgsz, batch, w.stride, str(device), opts.vid_stride, square, bool(opts.tile))
            videos.append((frames, name))
        except BadInput as e:
            skipped.append({"path": path, "reason": str(e)})
    stop, live = threading.Event(), []  # (StreamFrames, its name: .mp4, unique): reading from here on
    try:
        for source, name in zip(streams, unique_names([stream_name(s) + ".mp4" for s in streams]), strict=True):
            try:
                frames = StreamFrames(source, imgsz, w.stride, str(device), opts.vid_stride, square, stop,
                                      bool(opts.tile))  # fmt: skip
                live.append((frames, name))
            except BadInput as e:
                skipped.append({"path": source, "reason": str(e)})
        if not len(files) and not videos and not live:
            first = skipped[0]
            raise FastloadError(f"{first['path']}: {first['reason']} (no usable image or video among {len(skipped)} "
                                "files)")  # fmt: skip
        for s in skipped:
            say(f"{s['path']}: {s['reason']} (skipped)")
        model = inference_model(w, device)
        if opts.tile and opts.visualize:
            raise FastloadError("--tile: sliced inference merges boxes; --visualize is not sliced: run without --tile")
        # pad 0: each batch's shape is the smallest multiple of the stride (32; 64 for a P6 model) around its letterbox,
        # as detect.py's auto letterbox (an export for one shape: square, as detect.py's for every export); and
        # detect.py's resize: bilinear without smoothing (its validation's INTER_AREA smooths)
        tiling = Tiling(opts.tile, opts.tile_overlap) if opts.tile else None
        tiled = tiled_records(files.sizes, tiling) if tiling and len(files) else None  # images larger than a tile
        whole = None if tiled is None or opts.tile_whole else np.setdiff1d(np.arange(len(files)), tiled)
        loader = ValLoader(files, imgsz, batch, pad=0.0, stride=w.stride, rect=not square, device=str(device),
                           workers=opts.workers, antialias=False, records=whole) if len(files) else None  # fmt: skip
        pictures = PictureLoader(files, tiled, str(device), opts.workers) if tiled is not None else None
        out = new_run_dir(os.path.dirname(opts.out) or ".", os.path.basename(opts.out), opts.exist_ok)
        csv_path = os.path.join(out, "predictions.csv")
        pending: deque = deque()
        threads = max(1, min(4, os.cpu_count() or 1))
        total = len(files) + sum(v.frames for v, _ in videos) if not live else None  # frames as the videos' headers say
        t1 = time.perf_counter()
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="draw") as pool,
            tqdm(total=total, desc="detect", unit="img", disable=not progress or None) as bar,
            open(partial_path(csv_path), "w", newline="") if opts.save_csv else contextlib.nullcontext() as table,
        ):
            results = Results(out, w.names, opts, csv.writer(table) if table is not None else None,
                              FeatureMaps(model) if opts.visualize else None)  # fmt: skip
            if table is not None:
                results.table.writerow(["Image Name", "Prediction", "Confidence"])  # YOLOv5's columns
            speed = Speed(device)
            if loader is None:
                images = ()
            elif pictures is not None:
                images = sliced_per_image(model, loader, pictures, tiling, opts, speed)
            else:
                images = per_image(model, loader, opts, speed, results.maps)
            for j, i, det, mask in images:
                name = files.out_names[i]
                results.record(det, files.sizes[i], os.path.splitext(name)[0], name, mask)
                results.visualize(j, os.path.splitext(name)[0])
                crops = crop_paths(out, name, det, w.names) if opts.save_crop else []
                if opts.save_images or crops:
                    path = picture_path(out, name) if opts.save_images else ""
                    if path:
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                    pending.append(pool.submit(render_file, files.paths[i], det, w.names, path, crops, opts, mask))
                    while len(pending) > 4 * threads:  # memory stays bounded: a few pictures in flight
                        pending.popleft().result()
                bar.update()
            for job in pending:
                job.result()
            clips = [detect_video(model, video, name, results, speed, bar) for video, name in videos]
            lives, interrupted = detect_streams(model, live, results, speed, bar, stop)
        if opts.save_csv:
            os.replace(partial_path(csv_path), csv_path)
        seconds = time.perf_counter() - t1
        frames = sum(c["frames"] for c in clips + lives)
        return {
            "out": out,
            "weights": as_given(paths),
            "models": models(w, paths),
            "format": w.source,
            "segment": is_segment(model),  # a segmentation model: masks drawn, label files hold outlines
            "device": str(device),
            "imgsz": imgsz,
            "conf": opts.conf,
            "iou": opts.iou,
            "augment": opts.augment,
            "tile": tile_json(
                opts.tile, opts.tile_overlap, opts.tile_whole, tile_count(files.sizes, tiled, tiling), opts.merging
            ),  # fmt: skip
            "images": len(files),
            "videos": clips,
            "streams": lives,
            "interrupted": interrupted,
            "frames": frames,
            "detections": sum(results.per_class.values()),
            "per_class": {w.names[c]: n for c, n in sorted(results.per_class.items())},
            "skipped": skipped,
            "labels": os.path.join(out, "labels") if opts.save_txt else None,
            "crops": os.path.join(out, "crops") if opts.save_crop else None,
            "csv": csv_path if opts.save_csv else None,
            "visualized": results.visualized,  # images and frames whose layer outputs were drawn (--visualize)
            "images_per_sec": (len(files) + frames) / seconds,  # images and frames: reading, model, NMS and writing
            "speed_ms": speed.ms_per_image(),  # YOLOv5's per image: waiting for the loader, the model, NMS
            "seconds": time.perf_counter() - t0,
        }
    finally:
        stop.set()  # the streams' readers end
