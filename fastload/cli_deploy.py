"""The CLI's deployment commands: `fastload detect` and `export` (YOLOv5's detect.py and export.py). Registered on
`fastload.cli.main`; the work is imported when a command runs, so `--help` does not wait for torch."""

from __future__ import annotations

import os

import click
from tqdm import tqdm

from fastload.cli import DEVICE_AUTO, POSITIVE, emit, main
from fastload.cli_inference import HALF, WEIGHTS, EnsembleCommand, nms_options, tile_options
from fastload.errors import FastloadError


@main.command(cls=EnsembleCommand)
@click.argument("sources", nargs=-1)
@click.option("--source", "more", multiple=True, help="An image source, as YOLOv5's --source (repeatable).")
@WEIGHTS
@click.option("--project", default="runs/detect", show_default=True)
@click.option("--name", default="exp", show_default=True, help="Results go to PROJECT/NAME/ (taken: NAME2, ...).")
@click.option("--exist-ok", is_flag=True, help="Write into PROJECT/NAME even if it exists.")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Long side, rounded up to the stride (default: the checkpoint's size; YOLOv5's: 640).")  # fmt: skip
@nms_options(conf=0.25, iou=0.45, max_det=1000)  # YOLOv5 detect.py's
@click.option("--classes", default="", help="Keep only these classes, by id or name: 0,2 or person,car.")
@click.option("--agnostic-nms", is_flag=True, help="Suppress overlapping boxes across classes.")
@click.option("--augment", is_flag=True, help="YOLOv5's test-time augmentation (3 passes: scales, mirror).")
@HALF
@click.option("--batch", default=16, show_default=True, type=POSITIVE, help="Images per batch (by aspect ratio).")
@click.option("--vid-stride", default=1, show_default=True, type=POSITIVE, help="Of a video, every Nth frame only.")
@DEVICE_AUTO
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="DALI source processes.")
@click.option(
    "--save-txt",
    is_flag=True,
    help="Write labels/<image>.txt: cls cx cy w h, normalised (a segmentation model's: cls x1 y1 ...).",
)
@click.option("--save-conf", is_flag=True, help="With --save-txt: the confidence as a sixth column.")
@click.option("--nosave", is_flag=True, help="Do not write the pictures with boxes.")
@click.option("--save-crop", is_flag=True, help="Write each box's crop to crops/<class>/<image>.jpg.")
@click.option("--save-csv", is_flag=True, help="Write predictions.csv: image, class name, confidence.")
@click.option("--line-thickness", default=0, type=click.IntRange(min=0), help="Box lines (px; default: by size).")
@click.option("--hide-labels", is_flag=True, help="Draw the boxes without their names.")
@click.option("--hide-conf", is_flag=True, help="Draw the names without the confidences.")
@click.option("--visualize", is_flag=True, help="Draw each layer's output: <image>/stage<i>_<Module>_features.png.")
@tile_options
@click.option("--retina-masks", is_flag=True,
              help="Accepted (YOLOv5's segment/predict.py): a segmentation model's masks are at the original's "
              "resolution already.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def detect(sources: tuple[str, ...], more: tuple[str, ...], weights: tuple[str, ...], project: str, name: str,
           classes: str, agnostic_nms: bool, nosave: bool, as_json: bool, half: bool, retina_masks: bool,
           **options):  # fmt: skip
    """Detect objects in images and videos (files, folders searched recursively, 'globs/**/*.jpg', .txt lists, image
    and video URLs) and live sources (webcam numbers, rtsp:// and other stream URLs, .streams lists), as YOLOv5's
    detect.py: pictures and .mp4 videos with boxes in PROJECT/NAME/, and with --save-txt one YOLO label file per
    image (and per frame). Files that are not usable are reported and passed over. A stream runs until it ends or
    Ctrl-C, which keeps what was written. --weights may also be an exported .onnx or .torchscript file. A
    segmentation model (yolov5s-seg.pt, a --model s-seg run) also draws each object's mask, and its label files hold
    the masks' outlines (cls x1 y1 x2 y2 ..., as YOLOv5's segment/predict.py).

    \b
    Examples:
      fastload detect runs/demo/data/images/val --weights runs/train/exp/weights/best.pt
      fastload detect photos/ extra.jpg --weights yolov5s.pt --conf 0.4 --save-txt --json
      fastload detect 'shots/**/*.jpg' list.txt https://ultralytics.com/images/bus.jpg --weights yolov5s.pt
      fastload detect traffic.mp4 --weights yolov5s.pt --save-txt     # -> runs/detect/exp/traffic.mp4
      fastload detect rtsp://192.168.1.20:554/live --weights best.pt   # -> runs/detect/exp/live.mp4 (Ctrl-C ends it)
      fastload detect bus.jpg --weights yolov5s.pt --visualize   # -> runs/detect/exp/bus/stage0_Conv_features.png ...
      fastload detect photos/ --weights yolov5s-seg.pt --save-txt      # masks drawn, outlines in labels/
      fastload detect aerial/ --weights tiles.pt --tile 640 --imgsz 640   # a model trained on pack --tile's tiles
      fastload detect aerial/ --weights tiles.pt --tile auto   # the tiles it learned from (train --tile)
      fastload detect photos/ --weights yolov5s.pt best.pt   # YOLOv5's ensemble: both models' boxes, one NMS
      fastload detect photos/ --weights yolov5s-cls.pt --save-txt   # a classifier: its top 5 written on each
    """
    from yolo.detect import DetectOptions
    from yolo.detect import detect as run_detect
    from yolo.sliced import Merging
    from yolo.val import speed_line

    sources = (*sources, *more)
    if not sources:
        raise click.UsageError("give the images: SOURCES... or --source PATH")

    wanted = [c.strip() for c in classes.split("," if "," in classes else None) if c.strip()] or None
    merging = Merging(*(options.pop(k) for k in ("tile_merge", "tile_metric", "tile_threshold")))
    opts = DetectOptions(out=os.path.join(project, name), classes=wanted, agnostic=agnostic_nms,
                         save_images=not nosave, merging=merging, **options)  # fmt: skip
    result = run_detect(weights, list(sources), opts)
    skipped = f", {len(result['skipped'])} files skipped" if result["skipped"] else ""
    if result.get("task") == "classify":  # a classifier's: the likeliest classes per picture
        counts = ", ".join(f"{name} {n}" for name, n in result["per_class"].items())
        emit(
            result,
            as_json,
            [
                f"{result['images']} pictures classified ({counts}){skipped} "
                f"({result['images_per_sec']:.1f} img/s on {result['device']}): {result['out']}"
            ],
        )
        return
    rate = f"{result['images_per_sec']:.1f} img/s on {result['device']}"
    kinds = [f"{len(result[k])} {k[:-1]}{'s' * (len(result[k]) != 1)}" for k in ("videos", "streams") if result[k]]
    clips = f" and {result['frames']} frames of {' and '.join(kinds)}" if kinds else ""
    line = f"{result['detections']} boxes in {result['images']} images{clips}{skipped} ({rate}): {result['out']}"
    speed = speed_line(result["speed_ms"], f"batch {1 if opts.visualize else opts.batch}, {result['imgsz']} px")
    emit(result, as_json, [speed, line])


@main.command()
@click.option("--weights", required=True, help="A fastload checkpoint (best.pt, last.pt) or a YOLOv5 one (yolov5s.pt).")
@click.option("--include", default="onnx", show_default=True, type=click.Choice(["onnx", "torchscript"]),
              help="The format, as YOLOv5's --include.")  # fmt: skip
@click.option("-o", "--out", default="", help="The file (default: beside the weights, .onnx or .torchscript).")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Input side, rounded up to the stride (default: the checkpoint's size; YOLOv5's 640).")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default=1, show_default=True, type=POSITIVE, help="Input batch.")
@click.option("--dynamic", is_flag=True, help="Any batch, height and width (multiples of the stride) instead.")
@click.option("--opset", default=None, type=click.IntRange(min=18), help="ONNX opset (default: torch's, 20 today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def export(weights: str, include: str, out: str, imgsz: int, batch: int, dynamic: bool, opset: int | None,
           as_json: bool):  # fmt: skip
    """Export a checkpoint's EMA weights to ONNX (or TorchScript) as YOLOv5's export.py does: input `images` (batch
    x 3 x H x W, RGB in [0, 1]), output `output0` (batch x anchors x 5+nc: cx, cy, w, h in pixels, objectness,
    class scores; a segmentation model's also 32 mask coefficients, and `output1`: batch x 32 x H/4 x W/4 mask
    prototypes), YOLOv5's `stride` and `names` metadata; checked against PyTorch (ONNX: with ONNX Runtime). A
    classifier's output is its logits, batch x classes (input normalised by ImageNet's mean and deviation). ONNX needs
    `pip install 'fastload[export]'`.

    \b
    Examples:
      fastload export --weights runs/train/exp/weights/best.pt              # -> runs/train/exp/weights/best.onnx
      fastload export --weights yolov5s.pt --imgsz 640 --dynamic -o yolov5s.onnx --json
      fastload export --weights best.pt --include torchscript                # -> best.torchscript
      fastload export --weights runs/train-cls/exp/weights/best.pt          # a classifier
    """
    from yolo.export import export_onnx, export_torchscript

    if include == "torchscript" and (dynamic or opset):
        raise FastloadError("--dynamic and --opset are ONNX's: TorchScript is traced for one input shape")
    with tqdm(total=1, desc="export", unit="model", disable=None, leave=False) as bar:
        if include == "torchscript":
            result = export_torchscript(weights, out, imgsz, batch)
        else:
            result = export_onnx(weights, out, imgsz, batch, dynamic, opset)
        bar.update()
    output = f"output {result['output']}{protos(result)}"
    if include == "torchscript":
        side, error = result["imgsz"], result["max_error"]
        emit(result, as_json, [f"{result['path']}: TorchScript, input {batch} x 3 x {side} x {side}, {output} (vs "
                               f"PyTorch: max difference {error:.1e})"])  # fmt: skip
        return
    check = f"max difference {result['max_error']:.1e}" if result["checked"] else "not checked: no onnxruntime"
    side = result["imgsz"]
    emit(result, as_json, [f"{result['path']}: opset {result['opset']}, input {result['batch']} x 3 x {side} x {side}, "
                           f"{output} (ONNX Runtime vs PyTorch: {check})"])  # fmt: skip


def protos(result: dict) -> str:
    """An export's prototypes output, for its line: a segmentation model's."""
    return f" and prototypes {result['proto']}" if result["proto"] else ""
