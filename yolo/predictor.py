"""Detection on images in memory, as YOLOv5's `torch.hub.load("ultralytics/yolov5", "custom", "best.pt")` model
(its AutoShape and Detections): file names, URLs, PIL images and numpy or torch arrays in; boxes in original
pixels out, with YOLOv5's accessors (xyxy, xywh, xyxyn, xywhn, rows like its pandas() frames), drawing, saving and
crops. Any model `fastload val` runs: a fastload or YOLOv5 checkpoint, or an exported ONNX or TorchScript file.

    model = Detector("runs/train/exp/weights/best.pt", device="cuda")
    results = model(["bus.jpg", Image.open("zidane.jpg"), frame_rgb])   # one batch, letterboxed on the device
    results.xyxy[0]          # tensor [k, 6]: x1, y1, x2, y2, confidence, class, in the first image's pixels
    results.rows()[0]        # [{"xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"}, ...]
    results.save("runs/detect/hub")                                      # the images with their boxes drawn
    Detector("tiles.pt", tile=640)(aerial_rgb)   # sliced inference: a large picture by its tiles (yolo.sliced)

A segmentation model's results also hold each detection's mask (`results.masks[0]`: bool [k, H, W] in the first
image's pixels) and outline (`results.segments[0]`), drawn under the boxes.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from fastload.errors import FastloadError
from fastload.fetch import fetched, is_url
from fastload.loader.arrays import batch_shape, letterbox_arrays
from fastload.loader.draw import annotate, save_image
from fastload.loader.files import unique_names
from yolo.classify import classify_arch
from yolo.detect import DetectOptions, crop_paths, predictions, save_one_box, sliced_arrays
from yolo.ensemble import label
from yolo.exported import inference_model, input_side, needs_checkpoint, read_model, square_only
from yolo.segment import BoxMask
from yolo.sliced import MERGE, Merging, tile_side
from yolo.train import resolve_device, say
from yolo.val import Speed


def as_array(image) -> tuple[np.ndarray, str]:
    """(H x W x 3 uint8 RGB, a name) for a file name, URL, PIL image, H x W (x 1, 3 or 4) numpy array or 3 x H x W
    torch tensor (uint8, or float in [0, 1]); files are turned upright by their EXIF orientation, as YOLOv5's."""
    name = ""
    if isinstance(image, str | Path):
        name, source = os.path.basename(str(image).split("?")[0]), str(image)
        if is_url(source):
            with tempfile.TemporaryDirectory() as tmp, fetched(source, os.path.join(tmp, name or "image"),
                                                               f"{name}: an image URL") as part:  # fmt: skip
                return as_array(open_image(part, source))[0], name
        image = open_image(source, source)
    if isinstance(image, Image.Image):
        name = name or os.path.basename(getattr(image, "filename", "") or "")
        image = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if isinstance(image, torch.Tensor):  # C x H x W (H x W x C when the first side is no channel count)
        image = image.detach().cpu()
        image = (image * 255).round() if image.is_floating_point() else image
        chw = image.dim() == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 3, 4)
        image = image.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy() if chw else image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise FastloadError(f"an image array must be H x W x 3 (RGB), not {'x'.join(map(str, image.shape))}")
    if image.dtype != np.uint8:
        image = (image * 255 if image.dtype.kind == "f" and image.max() <= 1 else image).clip(0, 255).astype(np.uint8)
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    return np.ascontiguousarray(image), name


def open_image(path: str, name: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise FastloadError(f"{name}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise FastloadError(f"{name}: not an image ({type(e).__name__})") from None


@dataclass
class Detections:
    """YOLOv5's Detections: per image its array (RGB), its boxes [k, 6] (x1, y1, x2, y2, conf, cls) in its
    pixels, its name; the class names; milliseconds per image for the pre-process, the model and NMS."""

    images: list[np.ndarray]
    boxes: list[np.ndarray]
    files: list[str]
    names: list[str]
    speed_ms: dict = field(default_factory=dict)
    shape: tuple[int, ...] = ()  # the batch the model got: N x 3 x H x W
    box_masks: list[list[BoxMask]] | None = None  # a segmentation model's: per image, its detections' masks

    @property
    def masks(self) -> list[torch.Tensor] | None:
        """A segmentation model's masks: per image bool [k, H, W] in its pixels (YOLOv5's retina masks); else None."""
        if self.box_masks is None:
            return None
        return [torch.from_numpy(np.stack([m.dense(im.shape[:2]) for m in masks]) if masks else
                                 np.zeros((0, *im.shape[:2]), bool))
                for masks, im in zip(self.box_masks, self.images, strict=True)]  # fmt: skip

    @property
    def segments(self) -> list[list[np.ndarray]] | None:
        """A segmentation model's outlines: per image, per detection a polygon [n, 2] (x, y) in its pixels."""
        return None if self.box_masks is None else [[m.polygon() for m in masks] for masks in self.box_masks]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def xyxy(self) -> list[torch.Tensor]:
        return [torch.from_numpy(b) for b in self.boxes]

    @property
    def xywh(self) -> list[torch.Tensor]:
        out = []
        for b in self.boxes:
            xywh = b.copy()
            xywh[:, :2], xywh[:, 2:4] = (b[:, :2] + b[:, 2:4]) / 2, b[:, 2:4] - b[:, :2]
            out.append(torch.from_numpy(xywh))
        return out

    @property
    def xyxyn(self) -> list[torch.Tensor]:
        return [self._normalised(b, im) for b, im in zip(self.xyxy, self.images, strict=True)]

    @property
    def xywhn(self) -> list[torch.Tensor]:
        return [self._normalised(b, im) for b, im in zip(self.xywh, self.images, strict=True)]

    @staticmethod
    def _normalised(boxes: torch.Tensor, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        return boxes / torch.tensor([w, h, w, h, 1, 1], dtype=boxes.dtype)

    def rows(self) -> list[list[dict]]:
        """Per image its detections as YOLOv5's `results.pandas().xyxy[i]` rows (pandas.DataFrame(rows) is that
        frame)."""
        keys = ("xmin", "ymin", "xmax", "ymax", "confidence")
        return [[dict(zip(keys, map(float, d[:5]), strict=True)) | {"class": int(d[5]), "name": self.names[int(d[5])]}
                 for d in b] for b in self.boxes]  # fmt: skip

    def render(self, labels: bool = True, confidences: bool = True) -> list[Image.Image]:
        """The images with their boxes (and masks) drawn, as `fastload detect` draws them."""
        masks = self.box_masks or [None] * len(self)
        return [annotate(Image.fromarray(im), b, self.names, labels=labels, confidences=confidences, masks=m)
                for im, b, m in zip(self.images, self.boxes, masks, strict=True)]  # fmt: skip

    def save(self, folder: str, labels: bool = True) -> list[str]:
        """The rendered images written to `folder` under their names (image0.jpg, ... for arrays), atomically."""
        os.makedirs(folder, exist_ok=True)
        paths = [os.path.join(folder, name) for name in self.files]
        for picture, path in zip(self.render(labels), paths, strict=True):
            save_image(picture, path, quality=95)
        return paths

    def crop(self, folder: str, save: bool = True) -> list[dict]:
        """Each box's region (YOLOv5's save_one_box: 2% and 10 pixels larger, clipped) as {box, conf, cls, label,
        im}, and with `save` written to folder/crops/<class>/<image>.jpg, <image>2.jpg, ..."""
        crops = []
        for image, boxes, name in zip(self.images, self.boxes, self.files, strict=True):
            paths = crop_paths(folder, name, boxes, self.names) if save else [""] * len(boxes)
            for d, path in zip(boxes, paths, strict=True):
                im = save_one_box(Image.fromarray(image), d[:4], path)
                label = f"{self.names[int(d[5])]} {d[4]:.2f}"
                crops.append({"box": d[:4].tolist(), "conf": float(d[4]), "cls": int(d[5]), "label": label, "im": im,
                              "path": path or None})  # fmt: skip
        return crops

    def __str__(self) -> str:
        lines = []
        for k, (image, boxes) in enumerate(zip(self.images, self.boxes, strict=True)):
            counts = np.bincount(boxes[:, 5].astype(int), minlength=len(self.names)) if len(boxes) else []
            found = ", ".join(f"{n} {self.names[c]}{'s' * int(n > 1)}" for c, n in enumerate(counts) if n)
            lines.append(f"image {k + 1}/{len(self)}: {image.shape[0]}x{image.shape[1]} {found or '(no detections)'}")
        ms = self.speed_ms
        if ms:
            lines.append(f"Speed: {ms['preprocess']:.1f}ms pre-process, {ms['inference']:.1f}ms inference, "
                         f"{ms['nms']:.1f}ms NMS per image at shape {tuple(self.shape)}")  # fmt: skip
        return "\n".join(lines)


class Detector:
    """A model for images in memory; thresholds as YOLOv5's hub model (conf 0.25, IoU 0.45, each box's best
    class, at most 1000 boxes), attributes to change between calls as YOLOv5's (`model.conf = 0.5`)."""

    def __init__(
        self,
        weights: str | list[str],  # several checkpoints: YOLOv5's ensemble (their boxes pooled for one NMS)
        device: str = "",
        imgsz: int = 0,  # long side (0: a fastload checkpoint's training size, else 640); a fixed export: its own
        conf: float = 0.25,
        iou: float = 0.45,
        classes: list[int] | None = None,  # keep only these class ids
        agnostic: bool = False,
        max_det: int = 1000,
        tile: int | str = 0,  # > 0: sliced inference, an image larger than a tile by its tiles, merged (yolo.sliced);
        # "auto": the side of the tiles the model learned from (train --tile)
        tile_overlap: float = 0.2,
        tile_merge: Merging = MERGE,  # how an object's detections from overlapping tiles join (SAHI's postprocess)
    ) -> None:
        self.weights = read_model(weights, say)
        if classify_arch(getattr(self.weights, "arch", "")):
            raise FastloadError(f"{label(weights)}: a classification model; the detector takes detection models "
                                "(fastload detect classifies pictures)")  # fmt: skip
        self.device = resolve_device(device)
        self.imgsz, self.square = input_side(self.weights, imgsz, say), square_only(self.weights)
        self.names, self.stride = list(self.weights.names), self.weights.stride
        self.conf, self.iou, self.classes, self.agnostic, self.max_det = conf, iou, classes, agnostic, max_det
        self.tile, self.tile_overlap, self.tile_merge = (
            tile_side(tile, self.weights.config, label(weights)),
            tile_overlap,
            tile_merge,
        )
        self.model = inference_model(self.weights, self.device).eval()

    def __call__(self, images, size: int = 0, augment: bool = False) -> Detections:
        """Detections for one image or a list of them (file names, URLs, PIL images, arrays), run as one batch
        letterboxed to `size` (default: the detector's), as YOLOv5's `model(images, size=640)`."""
        needs_checkpoint(self.weights, augment)
        t0 = time.perf_counter()
        many = isinstance(images, list | tuple) or (isinstance(images, torch.Tensor) and images.dim() == 4)
        items = list(images) if many else [images]
        if not items:
            raise FastloadError("no images given")
        arrays, files = zip(*(as_array(im) for im in items), strict=True)
        imgsz = input_side(self.weights, size, say) if size else self.imgsz
        speed = Speed(self.device)
        opts = DetectOptions(conf=self.conf, iou=self.iou, max_det=self.max_det, classes=self.classes,
                             agnostic=self.agnostic, augment=augment)  # fmt: skip
        if self.tile:
            opts = replace(opts, tile=self.tile, tile_overlap=self.tile_overlap, merging=self.tile_merge)
            found = sliced_arrays(self.model, list(arrays), imgsz, self.stride, self.square, opts, speed)
            original, masks = [det for det, _ in found], [m for _, m in found]
            seen = (len(arrays), 3, imgsz, imgsz)  # each picture's tiles at the model's side
        else:
            shape = batch_shape([a.shape[:2] for a in arrays], imgsz, self.stride, self.square)
            batch = letterbox_arrays(list(arrays), imgsz, shape, str(self.device))
            (_, x, _, _, original, masks), *_ = predictions(self.model, [batch], opts, speed)  # detect.py's NMS
            seen = tuple(x.shape)
        speed.seconds[0] = speed.last - t0 - sum(speed.seconds[1:])  # reading and letterboxing: before the model
        names = unique_names([Path(f or f"image{k}").with_suffix(".jpg").name for k, f in enumerate(files)])
        return Detections(list(arrays), [d.astype(np.float32) for d in original], names, self.names,
                          speed.ms_per_image(), seen, None if masks[0] is None else masks)  # fmt: skip
