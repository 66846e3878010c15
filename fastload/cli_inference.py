"""The options the commands that run a model share (`val`, `detect`): the NMS thresholds, sliced inference, and
YOLOv5's flags accepted for compatibility."""

from __future__ import annotations

import click

from fastload.cli import POSITIVE


def nms_options(conf: float, iou: float, max_det: int):
    """--conf/--conf-thres, --iou/--iou-thres and --max-det with these defaults."""

    def add(command):
        for option in reversed([
            click.option("--conf", "--conf-thres", "conf", default=conf, show_default=True,
                         type=click.FloatRange(0, 1), help="Confidence threshold."),
            click.option("--iou", "--iou-thres", "iou", default=iou, show_default=True, type=click.FloatRange(0, 1),
                         help="NMS IoU threshold."),
            click.option("--max-det", default=max_det, show_default=True, type=POSITIVE, help="Boxes kept per image."),
        ]):  # fmt: skip
            command = option(command)
        return command

    return add


class TileSide(click.ParamType):
    """--tile: a side in pixels (0: no tiles), or `auto`: the tiles the model learned from."""

    name = "SIZE|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            side = int(value)
        except ValueError:
            self.fail(f"{value!r}: a tile's side in pixels, or auto", param, ctx)
        if side < 0:
            self.fail(f"{side}: a tile's side is not negative", param, ctx)
        return side


def merge_options(command, when: str = "With --tile"):
    """--tile-merge, --tile-metric and --tile-threshold: how the detections of overlapping tiles merge (SAHI's
    postprocess, yolo.sliced.Merging); `when` begins their help."""
    for option in reversed([
        click.option("--tile-merge", default="nmm", show_default=True, type=click.Choice(["nmm", "nms"]),
                     help=f"{when}: an object's detections from overlapping tiles merged (boxes grow to their "
                          "union) or the best kept."),
        click.option("--tile-metric", default="ios", show_default=True, type=click.Choice(["ios", "iou"]),
                     help=f"{when}: two detections are one object by intersection over the smaller box (SAHI's)"
                          " or over the union (crowds)."),
        click.option("--tile-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help=f"{when}: the overlap above which two detections are one object."),
    ]):  # fmt: skip
        command = option(command)
    return command


def tile_options(command):
    """--tile, --tile-overlap, --tile-whole and how tiles' detections merge: sliced inference (detect, val;
    yolo.sliced)."""
    for option in reversed([
        click.option("--tile", default=0, type=TileSide(), metavar="SIZE|auto",
                     help="Sliced inference: a larger image by SIZE x SIZE tiles, boxes and masks merged (SAHI's); "
                          "auto: the tiles the model learned from."),
        click.option("--tile-overlap", default=0.2, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Share of a tile's side that neighbouring tiles overlap."),
        click.option("--tile-whole", is_flag=True,
                     help="With --tile: a larger image also whole, shrunk to --imgsz (SAHI's standard pass)."),
    ]):  # fmt: skip
        command = option(command)
    return merge_options(command)


RUNNABLE = (
    "A checkpoint (fastload's best.pt, YOLOv5's yolov5s.pt) or an exported model (.onnx, .torchscript); several "
    "checkpoints (--weights a.pt b.pt): YOLOv5's ensemble, their boxes pooled for one NMS."
)
WEIGHTS = click.option("--weights", required=True, multiple=True, help=RUNNABLE)
MODEL_FILES = (".pt", ".onnx", ".torchscript")  # what a name after --weights ends in to be another model


def spread_weights(args: list[str]) -> list[str]:
    """YOLOv5's `--weights a.pt b.pt`: the names after --weights's value that end as model files become more
    --weights (click's options take one value each; a source never ends so)."""
    out, taking = [], False  # taking: the last option was --weights with its value
    for k, arg in enumerate(args):
        if arg == "--":
            return out + args[k:]
        if taking and not arg.startswith("-") and arg.lower().endswith(MODEL_FILES):
            out += ["--weights", arg]
            continue
        taking = arg.startswith("--weights=") or (k > 0 and args[k - 1] == "--weights")
        out.append(arg)
    return out


class EnsembleCommand(click.Command):
    """A command whose --weights takes several files as YOLOv5's does (`--weights a.pt b.pt`; repeated --weights
    too): val, detect."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_weights(args))


HALF = click.option("--half", is_flag=True, help="Accepted (YOLOv5's): CUDA runs under float16 autocast already.")
