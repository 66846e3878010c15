"""The CLI's model commands: `fastload train` and `model` (YOLOv5's train.py and models/yolo.py on fastload's
loaders; val is in fastload.cli_val, detect and export in fastload.cli_deploy). Registered on `fastload.cli.main`;
the work is imported when a command runs, so `--help` does not wait for torch."""

from __future__ import annotations

import os
from functools import partial

import click
from tqdm import tqdm

from fastload.cli import DEVICE_AUTO, FRACTION, POSITIVE, dataset_options, emit, main
from fastload.cli_inference import merge_options
from fastload.errors import FastloadError

# yolo.model.MODELS, named here: `--help` does not wait for torch
SIZES = [*"nsmlx", *(f"{size}6" for size in "nsmlx"), *(f"{size}-seg" for size in "nsmlx"),
         *(f"{size}-cls" for size in "nsmlx")]  # fmt: skip
MODELS = [*SIZES, *(f"yolov5{size}" for size in SIZES)]  # YOLOv5's names too
OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSProp"]  # yolo.optim's, named here: `--help` does not wait for torch


def model_arch(value: str | None) -> str | dict | None:
    """--model n .. x, n6 .. x6, n-seg .. x-seg, yolov5n .. yolov5x-seg, YOLOv5's --cfg file name (models/yolov5s.yaml,
    when no such file is here) -> the model size (s, s6, s-seg); a model yaml file (yolov5s-ghost.yaml, a custom
    one) -> its dict."""
    if value is None:
        return None
    name = os.path.basename(value).removesuffix(".yaml").removesuffix(".yml")
    if os.path.isfile(value) and value.endswith((".yaml", ".yml")):
        from yolo.yaml_model import read_model_yaml

        try:
            return read_model_yaml(value)
        except FastloadError as e:
            raise click.BadParameter(str(e)) from None
    if name not in MODELS and value.endswith((".yaml", ".yml")):
        raise click.BadParameter(f"{value}: no such model yaml (yolov5n.yaml .. yolov5x-seg.yaml are built in; for "
                                 "YOLOv5's others, such as models/hub/yolov5-p2.yaml, give the file)")  # fmt: skip
    if name not in MODELS:
        from yolo.classify import torchvision_models

        if value in torchvision_models():  # a classifier of torchvision's, as YOLOv5's classify/train.py takes
            return value
        raise click.BadParameter(f"{value!r} is not one of n, s, m, l, x, n6 .. x6, n-seg .. x-seg, n-cls .. x-cls, "
                                 "yolov5n .. yolov5x-cls, a torchvision classifier (resnet18, ...), nor a model yaml "
                                 "file")  # fmt: skip
    return name.removeprefix("yolov5")


def latest_run(project: str) -> str:
    """The newest PROJECT/*/weights/last.pt (YOLOv5's bare --resume), or a FastloadError."""
    import glob

    found = glob.glob(os.path.join(glob.escape(project), "*", "weights", "last.pt"))
    if not found:
        raise FastloadError(f"--resume: no {project}/*/weights/last.pt to continue from (give the checkpoint)")
    return max(found, key=os.path.getmtime)


@main.command()
@click.option(
    "--data",
    default="",
    help="Store, YOLO, COCO or VOC folder, data.yaml, or an archive of one, or its archives joined by commas "
    "(packed once to runs/stores/).",
)
@dataset_options
@click.option("--val-whole", is_flag=True, help="With --tile: validate the whole val pictures (sliced), not tiles.")
@partial(merge_options, when="With --val-whole")
@click.option("--model", "--cfg", "model", default=None, callback=lambda c, p, v: model_arch(v),
              help="n, s, m, l, x; P6: n6 .. x6; segmentation: n-seg .. x-seg; classification: n-cls .. x-cls (or "
                   "yolov5s, yolov5s6.yaml, yolov5s-seg); or a model yaml file (yolov5-p2.yaml, your own). Default: "
                   "n (a classification store: n-cls), or --weights' model.")  # fmt: skip
@click.option("--weights", default="", help="Start from these weights (a fastload or YOLOv5 checkpoint).")
@click.option("--epochs", type=POSITIVE, help="Total epochs.  [default: 30; with --resume: the run's own]")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=256, show_default=True, type=POSITIVE,
              help="Pixels, rounded up to a multiple of 32 (P6 models: 64).")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default="16", show_default=True,
              help="Total batch, or 'auto' or -1 (AutoBatch on CUDA).")  # fmt: skip
@DEVICE_AUTO
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="DALI source processes per loader.")
@click.option("--multi-scale", is_flag=True, help="One size per batch in 0.5-1.5x imgsz.")
@click.option("--rect", is_flag=True, help="Batches by aspect ratio, each its own rectangle; no mosaic (YOLOv5's).")
@click.option("--quad", is_flag=True, help="Each 4 images make one of twice the side: 2x2 or one upscaled (YOLOv5's).")
@click.option("--mask-ratio", default=4, show_default=True, type=click.IntRange(min=1),
              help="Segmentation: target masks 1/N of the image side (YOLOv5's; 4: the prototypes' size).")  # fmt: skip
@click.option("--no-overlap", is_flag=True,
              help="Segmentation: each object's whole mask as its target, not one overlap mask per image "
              "(YOLOv5's).")  # fmt: skip
@click.option("--cosine", "--cos-lr", "cosine", is_flag=True, help="Cosine learning-rate decay (default linear).")
@click.option("--hyp", default="", help="A YOLOv5 hyp file (hyp.scratch-high.yaml, ...; default: scratch-low's).")
@click.option("--optimizer", default="SGD", type=click.Choice(OPTIMIZERS),
              help="(AdamW: lr0 ~1e-3)  [default: SGD; classification: Adam]")  # fmt: skip
@click.option("--lr0", type=click.FloatRange(0, min_open=True), default=None,
              help="Initial learning rate (over --hyp's).  [default: 0.01; classification: 0.001]")  # fmt: skip
@click.option("--decay", type=click.FloatRange(0), default=None,
              help="Weight decay (over --hyp's).  [default: 5e-4; classification: 5e-5]")  # fmt: skip
@click.option("--label-smoothing", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="Targets 1-e/2, e/2.  [default: 0; classification: 0.1]")  # fmt: skip
@click.option("--dropout", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="A classifier's dropout before its last layer (YOLOv5's --dropout).")  # fmt: skip
@click.option(
    "--patience",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stop after N epochs without a better fitness (0: never).",
)
@click.option("--freeze", default=0, type=click.IntRange(0),
              help="Freeze YOLOv5's layers 0..N-1 (10: the backbone; of a P6 model, 12).")  # fmt: skip
@click.option("--save-period", default=0, type=click.IntRange(min=0), help="Also keep weights/epochN.pt, every N.")
@click.option("--nominal-batch", default=0, type=click.IntRange(min=0), help="Accumulate to ~N images (default 64).")
@click.option("--no-augment", "augment", flag_value=False, default=True, help="Letterbox only (no mosaic etc.).")
@click.option("--single-cls", is_flag=True, help="Train every class as one ('item'), as YOLOv5's --single-cls.")
@click.option("--image-weights", is_flag=True, help="Draw images by rare and poorly detected classes (YOLOv5's).")
@click.option("--sync-bn", is_flag=True, help="BatchNorm over all ranks (torchrun on CUDA devices).")
@click.option("--cache", type=click.Choice(["ram", "disk"]), is_flag=False, flag_value="ram", default=None,
              help="Nothing to do: the store is the cache (YOLOv5's option, accepted).")  # fmt: skip
@click.option("--noval", is_flag=True, help="Validate only after the last epoch (and where --patience runs out).")
@click.option("--nosave", is_flag=True, help="last.pt only after the last epoch (best.pt when it improves).")
@click.option("--noautoanchor", is_flag=True, help="Keep the model's anchors (no k-means check).")
@click.option("--noplots", is_flag=True, help="No train_batch*/val_batch* pictures nor results.png.")
@click.option("--evolve", type=POSITIVE, is_flag=False, flag_value=300, default=None,
              help="Evolve the hyperparameters over N trainings (bare: 300) into runs/evolve/.")  # fmt: skip
@click.option("--val-interval", default=1, type=POSITIVE, help="Validate every N epochs (always the last).")
@click.option("--val-fraction", default=1.0, type=FRACTION, help="Validate on this fixed share of the val split.")
@click.option("--seed", default=0, show_default=True)
@click.option("--project", default="runs/train", show_default=True)
@click.option("--name", default="exp", show_default=True, help="Taken: exp2, exp3, ... (YOLOv5's runs).")
@click.option("--exist-ok", is_flag=True, help="Write into PROJECT/NAME even if it exists.")
@click.option("--resume", is_flag=False, flag_value="latest", default="",
              help="A weights/last.pt to continue from (alone: the newest under --project).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def train(as_json: bool, **options):
    """Train YOLOv5 on a store, or a dataset (packed once): runs/train/<name>/ gets results.csv and weights.

    \b
    Examples:
      fastload train --data runs/demo/demo.lmdb --model n --epochs 30 --imgsz 256
      fastload train --data datasets/coco128/data.yaml --model s --imgsz 640 --batch auto --multi-scale
      fastload train --data datasets/coco128/data.yaml --weights yolov5s.pt --imgsz 640   # fine-tune
      fastload train --data polygons.lmdb --model n-seg --epochs 100   # segmentation: masks from polygon labels
      fastload train --data data.yaml --hyp hyp.scratch-high.yaml --optimizer AdamW --patience 30 --freeze 10
      fastload train --data data.yaml --epochs 10 --evolve 100    # -> runs/evolve/exp/hyp_evolve.yaml
      fastload train --data labelled/ --autosplit 0.9,0.1   # one folder of images and labels: a tenth to val
      fastload train --data coco.yaml --classes person,car --weights yolov5s.pt   # two of COCO's classes
      fastload train --data visdrone/ --tile 640 --imgsz 640   # large pictures packed as 640 x 640 tiles
      fastload train --data train2017.zip,val2017.zip,annotations_trainval2017.zip   # a dataset in parts
      fastload train --data imagenette160/ --model s-cls --epochs 10   # classification: <split>/<class>/*.jpg
    """
    from yolo.evolve import evolve
    from yolo.hyp import read_hyp
    from yolo.train import config_from
    from yolo.train import train as run_train

    batch = options["batch"]
    if batch not in ("auto", "-1") and not (batch.isdigit() and int(batch) > 0):
        raise FastloadError(f"--batch must be a positive number or 'auto', not {batch!r}")
    options["batch"] = 0 if batch in ("auto", "-1") else int(batch)  # YOLOv5's AutoBatch is --batch-size -1
    if options["resume"] == "latest":  # YOLOv5's bare --resume
        options["resume"] = latest_run(options["project"])
    ctx = click.get_current_context()
    given = {k for k in options if ctx.get_parameter_source(k).name != "DEFAULT"}
    lr0, decay = options.pop("lr0"), options.pop("decay")
    options["hyp"] = read_hyp(options["hyp"]) if options["hyp"] else None
    if lr0 is not None or decay is not None:  # over the hyp file's (YOLOv5's classify/train.py has these options)
        extra = {"lr0": lr0, "weight_decay": decay}
        options["hyp"] = (options["hyp"] or {}) | {k: v for k, v in extra.items() if v is not None}
    if options.pop("cache"):  # YOLOv5's --cache ram keeps decoded images per process; the store already is shared
        click.echo("--cache: nothing to do; the store is the cache (compressed, memory-mapped and shared by every "
                   "worker and rank through the page cache)", err=True)  # fmt: skip
    generations = options.pop("evolve")
    if generations:
        if options["resume"]:
            raise FastloadError("--evolve starts its own trainings: without --resume (--exist-ok continues a folder)")
        if click.get_current_context().get_parameter_source("project").name == "DEFAULT":
            options["project"] = "runs/evolve"  # as YOLOv5
        result = evolve(config_from(**options), generations)
        best = result["best"]
        emit(result, as_json, [f"{result['generations']} generations; the best, {result['best_generation']}: mAP@0.5 "
                               f"{best['map50']:.3f}, mAP@0.5:0.95 {best['map50_95']:.3f}; its hyperparameters: "
                               f"{result['hyp']} (fastload train --hyp {result['hyp']})"])  # fmt: skip
        return
    result = run_train(config_from(**options), given=given)
    if result["rank"] != 0:  # torchrun: rank 0 reports
        return
    epochs = f"{result['epochs']} epoch{'s' * (result['epochs'] != 1)}"
    if result.get("task") == "classify":
        scores = f"top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}"
    else:
        masks = ""  # a segmentation model's masks too
        if "mask_map50" in result:
            masks = f" (masks {result['mask_map50']:.3f}, {result['mask_map50_95']:.3f})"
        scores = f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f}{masks}"
    emit(result, as_json, [f"{scores} after {epochs} ({result['images_per_sec']:.0f} img/s, data wait "
                           f"{result['data_wait_fraction']:.1%}, loader start {result['loader_startup_s']:.1f} s); "
                           f"weights: {result['weights']}"])  # fmt: skip


@main.command(name="model")
@click.argument("arch")
@click.option("--nc", default=None, type=POSITIVE, help="Classes (default: a yaml's nc, else 80; a checkpoint's own).")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=640, show_default=True, type=POSITIVE,
              help="The square image the GFLOPs are for.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model(arch: str, nc: int | None, imgsz: int, as_json: bool):
    """Build a model and print what it is, as YOLOv5's `python models/yolo.py --cfg`: layers, parameters, GFLOPs,
    strides, anchors; for a model yaml, its layer table. ARCH: n .. x, n6 .. x6, n-seg .. x-seg, n-cls .. x-cls (at
    224 px unless --imgsz), a model yaml file, or a checkpoint (fastload's or YOLOv5's: the model it holds).

    \b
    Examples:
      fastload model s                                  # yolov5s: 25 layers, 7,235,389 parameters, 16.4 GFLOPs
      fastload model my-yolov5-p2.yaml --nc 3           # check a yaml before training with it
      fastload model runs/train/exp/weights/best.pt --json
    """
    from yolo.weights import read_weights
    from yolo.yaml_model import arch_name, build_model, describe

    with tqdm(total=1, desc="build", unit="model", disable=None, leave=False) as bar:
        if arch.endswith((".pt", ".pth")) or (os.path.isfile(arch) and not arch.endswith((".yaml", ".yml"))):
            w = read_weights(arch)
            built, spec, names = w.model(), w.arch, w.names
        else:
            try:
                spec = model_arch(arch)
            except click.BadParameter as e:
                raise FastloadError(e.message) from None
            built, names = build_model(spec, nc or (spec.get("nc", 80) if isinstance(spec, dict) else 80)), None
        classifier = not hasattr(built, "detect")  # n-cls .. x-cls: YOLOv5's at 224 px
        if classifier and click.get_current_context().get_parameter_source("imgsz").name == "DEFAULT":
            imgsz = 224
        about, lines = describe(built, spec, imgsz)
        bar.update()
    result = {"model": arch_name(spec), **about, "imgsz": imgsz, "names": names,
              "yaml": spec if isinstance(spec, dict) else None}  # fmt: skip
    if classifier:
        result |= {"nc": built.nc, "strides": [32], "anchors": None, "task": "classify"}
    else:
        detect = built.detect
        result |= {"nc": detect.nc, "strides": detect.stride.int().tolist(),
                   "anchors": (detect.anchors * detect.stride.view(-1, 1, 1)).round(decimals=2).tolist()}  # fmt: skip
    lines[-1] += f", strides {result['strides']}, {result['nc']} classes"
    emit(result, as_json, lines)
