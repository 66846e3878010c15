"""The CLI's model commands: `fastload train`, `val` and `model` (YOLOv5's train.py, val.py and models/yolo.py on
fastload's loaders; detect and export are in fastload.cli_deploy). Registered on `fastload.cli.main`; the work is
imported when a command runs, so `--help` does not wait for torch."""

from __future__ import annotations

import os
import tempfile
from functools import partial

import click
from tqdm import tqdm

from fastload.cli import DEVICE_AUTO, FRACTION, POSITIVE, dataset_options, emit, main
from fastload.cli_inference import HALF, WEIGHTS, EnsembleCommand, merge_options, nms_options, tile_options
from fastload.errors import FastloadError

# yolo.model.MODELS, named here: `--help` does not wait for torch
SIZES = [*"nsmlx", *(f"{size}6" for size in "nsmlx"), *(f"{size}-seg" for size in "nsmlx")]
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
        raise click.BadParameter(f"{value!r} is not one of n, s, m, l, x, n6 .. x6, n-seg .. x-seg, yolov5n .. "
                                 "yolov5x-seg, nor a model yaml file")  # fmt: skip
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
              help="n, s, m, l, x; P6: n6 .. x6; segmentation: n-seg .. x-seg (or yolov5s, yolov5s6.yaml, "
                   "yolov5s-seg); or a model yaml file (yolov5-p2.yaml, your own). Default: n, or --weights' "
                   "model.")  # fmt: skip
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
@click.option("--optimizer", default="SGD", show_default=True, type=click.Choice(OPTIMIZERS), help="(AdamW: lr0 ~1e-3)")
@click.option("--label-smoothing", default=0.0, type=click.FloatRange(0, 1, max_open=True), help="Targets 1-e/2, e/2.")
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
    options["hyp"] = read_hyp(options["hyp"]) if options["hyp"] else None
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
    result = run_train(config_from(**options))
    if result["rank"] != 0:  # torchrun: rank 0 reports
        return
    epochs = f"{result['epochs']} epoch{'s' * (result['epochs'] != 1)}"
    masks = ""  # a segmentation model's masks too
    if "mask_map50" in result:
        masks = f" (masks {result['mask_map50']:.3f}, {result['mask_map50_95']:.3f})"
    emit(
        result,
        as_json,
        [
            f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f}{masks} after {epochs} "
            f"({result['images_per_sec']:.0f} img/s, data wait {result['data_wait_fraction']:.1%}, "
            f"loader start {result['loader_startup_s']:.1f} s); weights: {result['weights']}"
        ],
    )


@main.command(cls=EnsembleCommand)
@WEIGHTS
@click.option("--data", default="", help="Store or dataset to validate on (default: the checkpoint's).")
@click.option("--split", "--task", "split", default="val", show_default=True,
              help="The store's split (YOLOv5's --task; 'speed': val at conf 0.25, IoU 0.45).")  # fmt: skip
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Image size (default: the checkpoint's).")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default=32, show_default=True, type=POSITIVE)
@DEVICE_AUTO
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="DALI source processes.")
@nms_options(conf=0.001, iou=0.6, max_det=300)  # YOLOv5 val.py's
@click.option("--project", default="runs/val", show_default=True)
@click.option("--name", default="exp", show_default=True,
              help="What is saved goes to PROJECT/NAME/ (taken: NAME2, ...); nothing saved, no folder.")  # fmt: skip
@click.option("--exist-ok", is_flag=True, help="Write into PROJECT/NAME even if it exists.")
@click.option("--plot", is_flag=False, flag_value="", default=None,
              help="Draw the first batch (val_batch0_labels.jpg, val_batch0_pred.jpg) and YOLOv5's "
              "confusion_matrix.png, PR, F1, P, R curves into PROJECT/NAME; with PREFIX: "
              "PREFIX_labels.jpg, ...")  # fmt: skip
@click.option("--save-json", is_flag=False, flag_value="", default=None,
              help="Write the predictions as COCO results: to PROJECT/NAME/<weights>_predictions.json (YOLOv5's "
              "--save-json), or to SAVE_JSON.")  # fmt: skip
@click.option("--save-txt", is_flag=True, help="Write PROJECT/NAME/labels/<image>.txt: cls cx cy w h, normalised.")
@click.option("--save-conf", is_flag=True, help="With --save-txt: the confidence as a sixth column.")
@click.option("--save-hybrid", is_flag=True,
              help="--save-txt with each image's labels merged in at confidence 1 (YOLOv5's autolabelling: the mAP "
              "is then not the model's alone).")  # fmt: skip
@click.option("--coco-json", default="",
              help="COCO instances JSON: its ids, and pycocotools' mAP beside ours (with --data coco.yaml: its "
              "annotations/instances_val2017.json, and --save-json, as YOLOv5).")  # fmt: skip
@click.option("--errors", default=None, type=click.IntRange(min=0), metavar="N",
              help="Write PROJECT/NAME/errors.csv: each image's correct, wrong-class, missed and false detections "
              "(paired as the confusion matrix pairs them), worst first; draw the N worst into errors/.")  # fmt: skip
@click.option("--errors-conf", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="With --errors: the detections counted (the confusion matrix's; your detect --conf).")  # fmt: skip
@click.option("--verbose", is_flag=True, help="The per-class table for any class count (default: under 50).")
@click.option("--single-cls", is_flag=True, help="Every class as one (default: as the checkpoint was trained).")
@click.option("--augment", is_flag=True, help="YOLOv5's test-time augmentation (3 passes: scales, mirror).")
@click.option("--mask-ratio", default=0, type=click.IntRange(min=0),
              help="Segmentation: score masks against targets 1/N of the image side (default: the run's; of a "
              "YOLOv5 checkpoint 1, as its segment/val.py).")  # fmt: skip
@click.option("--overlap/--no-overlap", default=None,
              help="Segmentation: targets from one overlap mask per image, or each object's whole mask (default: "
              "the run's; of a YOLOv5 checkpoint --no-overlap, as its segment/val.py).")  # fmt: skip
@tile_options
@HALF
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def val(weights: tuple[str, ...], data: str, split: str, imgsz: int, batch: int, device: str, plot: str | None,
        as_json: bool, conf: float, iou: float, max_det: int, save_json: str | None, coco_json: str, verbose: bool,
        single_cls: bool, augment: bool, half: bool, project: str, name: str, exist_ok: bool, save_txt: bool,
        save_conf: bool, save_hybrid: bool, errors: int | None, errors_conf: float, mask_ratio: int,
        overlap: bool | None, workers: int, tile: int | str, tile_overlap: float, tile_whole: bool, tile_merge: str,
        tile_metric: str, tile_threshold: float):  # fmt: skip
    """Validate a checkpoint's EMA weights (fastload's, or YOLOv5's such as yolov5s.pt) or an exported model (.onnx,
    .torchscript: fastload's or YOLOv5's): mAP@0.5, mAP@0.5:0.95, precision, recall, per class; optionally
    COCO-format predictions and pycocotools' mAP. An export for one input shape gets square batches of its side.

    \b
    Examples:
      fastload val --weights runs/train/exp/weights/best.pt --json
      fastload val --weights yolov5s.pt --data coco.lmdb --imgsz 640
      fastload val --weights runs/train/exp/weights/best.onnx --data runs/demo/demo.lmdb
      fastload val --weights best.pt --data coco.lmdb --save-json preds.json --coco-json instances_val2017.json
      fastload val --weights best.pt --data new.lmdb --save-hybrid --save-conf   # -> runs/val/exp/labels/*.txt
      fastload val --weights tiles.pt --data aerial/ --tile 640 --imgsz 640   # whole pictures, by their tiles
      fastload val --weights best.pt --errors 20   # runs/val/exp/errors.csv: each image's mistakes; 20 drawn
      fastload val --weights best.pt yolov5s.pt --data coco.yaml   # YOLOv5's ensemble: boxes pooled, one NMS
    """
    from fastload.loader.val_loader import ValLoader
    from fastload.pack.cache import STORES, ensure_store, run_source
    from fastload.pack.packer import source_id
    from fastload.pack.tiles import Tiling
    from fastload.store import NoSplit, open_store
    from yolo.coco import CocoIds, coco_annotations, pycocotools_map, split_annotations, write_predictions
    from yolo.ensemble import as_given, label, models
    from yolo.errors import report_errors
    from yolo.exported import input_side, needs_checkpoint, read_model, square_only
    from yolo.model import is_segment
    from yolo.rundir import new_run_dir
    from yolo.segment import MASK_RATIO, check_mask_ratio
    from yolo.sliced import Merging, SlicedImages, sliced_validate, tile_json, tile_side
    from yolo.train import MASK_KEYS, resolve_device, say
    from yolo.val import Speed, class_rows, class_table, save_labels, speed_line, validate

    if split == "speed":  # YOLOv5's val.py --task speed: the val split at detect.py's thresholds
        split, conf, iou = "val", 0.25, 0.45
    w, paths, weights = read_model(weights, say), weights, label(weights)  # several: an ensemble, named a.pt + b.pt
    if not (data or w.config.get("data")):
        kind = {"yolov5": "a YOLOv5 checkpoint", "onnx": "an ONNX file", "ensemble": "the ensemble's first model"}
        kind = kind.get(w.source, "a TorchScript file")
        raise FastloadError(f"{weights}: {kind} names no dataset: give --data")
    needs_checkpoint(w, augment)
    tile = tile_side(tile, w.config, weights)  # `auto`: the tiles it learned from
    dev = resolve_device(device)
    same = not data or source_id(data) == w.config.get("dataset")  # the run's dataset: split as it was
    source = data or run_source(w.config["data"], w.config.get("dataset", ""), say)
    if tile and not data and w.config.get("tile") and w.config.get("dataset"):  # trained on tiles: its pictures
        source = w.config["dataset"]
    view = {k: w.config.get(k) for k in ("autosplit", "classes", "background", "dedupe")} if same else {}
    if same and w.config.get("tile") and not tile:  # the run's tiles (with --tile: the whole pictures, sliced)
        view["tile"] = Tiling(
            w.config["tile"], w.config.get("tile_overlap", 0.2), whole=w.config.get("tile_whole", False)
        )
    given, data = data, ensure_store(source, STORES, **view)[0]
    if os.path.basename(given) == "coco.yaml":  # YOLOv5's val.py on COCO: its results JSON, scored by pycocotools
        save_json = "" if save_json is None else save_json
        coco_json = coco_json or coco_annotations(given)
    coco_json = coco_json or split_annotations(given or (w.config.get("dataset", "") if same else ""), split)
    try:
        store = open_store(data, split)
    except NoSplit as error:
        raise NoSplit(f"{error}: --task names the split to validate") from None
    if tile and store.meta.get("pack", {}).get("tile"):
        raise FastloadError(f"{data}: a store of tiles already; --tile slices whole pictures: give them (--data)")
    if single_cls or w.config.get("single_cls"):
        store = store.single_class()
    if len(store.names) != len(w.names):
        raise FastloadError(f"{weights}: {len(w.names)} classes, but {data} has {len(store.names)}")
    model = w.model().to(dev)
    imgsz = input_side(w, imgsz, say)  # 640: YOLOv5's own default for its weights
    rect = not square_only(w)  # an export for one shape: square batches (YOLOv5's val.py: for every export)
    masks = 0  # a segmentation model: the masks' mAP (YOLOv5's (M))
    if is_segment(model):  # targets made as the run made them; a YOLOv5 checkpoint's as its segment/val.py does
        yolov5 = w.source == "yolov5"  # (whole masks at the input's size)
        masks = mask_ratio or (1 if yolov5 else w.config.get("mask_ratio", MASK_RATIO))
        overlap = not (yolov5 or w.config.get("no_overlap")) if overlap is None else overlap
        check_mask_ratio(masks)
    elif mask_ratio or overlap is not None:
        say(f"warning: {weights} is a detection model: --mask-ratio and --overlap/--no-overlap change nothing")
    if errors is not None and save_hybrid:
        raise FastloadError("--errors scores the model's detections; --save-hybrid adds the labels to them")
    if tile and save_hybrid:
        raise FastloadError("--tile: --save-hybrid's labels join the predictions of whole images: validate without "
                            "--tile")  # fmt: skip
    loading = partial(ValLoader, imgsz=imgsz, batch=batch, stride=w.stride, rect=rect, device=str(dev), workers=workers)
    loader = None if tile else loading(store, mask_ratio=masks, overlap=overlap if masks else True)
    ids = None  # the ids to write predictions with: checked before the work
    if save_json is not None or coco_json:
        ids = CocoIds.from_annotations(coco_json, store) if coco_json else CocoIds.from_store(store)
    save_txt |= save_hybrid  # as YOLOv5's val.py
    out = ""  # PROJECT/NAME, made only when something goes there
    if save_txt or plot == "" or save_json == "" or errors is not None:
        out = new_run_dir(project, name, exist_ok)
    if save_json == "":
        save_json = os.path.join(out, os.path.splitext(os.path.basename(paths[0]))[0] + "_predictions.json")
    curves = ""
    if plot == "":
        plot, curves = os.path.join(out, "val_batch0"), os.path.join(out, "")
    elif plot:
        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
        curves = f"{plot}_"
    if save_hybrid:
        say("--save-hybrid: each image's labels join its predictions, so the mAP is not the model's alone")
    speed, merging = Speed(dev), Merging(tile_merge, tile_metric, tile_threshold)
    segmentations = ids is not None and bool(masks)
    if tile:
        images = SlicedImages(store, loading, Tiling(tile, tile_overlap), tile_whole, workers)
        metrics = sliced_validate(model, images, conf, iou, max_det, augment, speed, curves, segmentations, merging)
    else:
        metrics = validate(model, loader, store, conf, iou, max_det, plot=plot or "", augment=augment, speed=speed,
                           curves=curves, hybrid=save_hybrid, segmentations=segmentations)  # fmt: skip
    result = {k: metrics[k] for k in ("map50", "map50_95", "precision", "recall", "f1_conf", "images", "seconds")}
    result |= {k: metrics[k] for k in MASK_KEYS if k in metrics}
    if masks:  # the targets the masks were scored against (sliced: each object's at the picture's resolution)
        result |= {"mask_ratio": 1 if tile else masks, "overlap": False if tile else overlap}
    rate = metrics["images"] / metrics["seconds"]
    result |= {
        "weights": as_given(paths),
        "models": models(w, paths),
        "format": w.source,
        "imgsz": imgsz,
        "epochs": w.epochs,
        "images_per_sec": rate,
        "data_wait_fraction": None,
    }
    result["tile"] = tile_json(tile, tile_overlap, tile_whole, metrics.get("tiles", 0), merging)
    result |= {"plots": metrics.get("plots", []), "split": split, "conf": conf, "iou": iou, "augment": augment,
               "speed_ms": speed.ms_per_image(), "loader_startup_s": speed.startup_s}  # fmt: skip
    result["classes"] = class_rows(metrics, store.names)
    lines = class_table(result["classes"]) if verbose or len(store.names) < 50 else []
    if masks and not lines:  # the table (with its mask columns) not printed
        lines.append("masks: " + ", ".join(f"{k.removeprefix('mask_')} {result[k]:.3f}" for k in MASK_KEYS))
    if masks:
        kind = "one overlap mask per image" if overlap else "each object's whole mask"
        lines.append("masks scored against each object's whole mask at the pictures' resolution" if tile else
                     f"masks scored against {kind} at 1/{masks} of the input's side")  # fmt: skip
    lines.append(speed_line(result["speed_ms"], f"batch {batch}, {imgsz} px"))
    result |= {"save_dir": out or None, "labels": None, "hybrid": save_hybrid}
    if save_txt:
        result["labels"] = save_labels(out, store, metrics["predictions"], save_conf)
        lines.append(f"{len(metrics['predictions'])} label files saved to {result['labels']}")
    if errors is not None:
        result["errors"] = report_errors(out, store, metrics["predictions"], errors, errors_conf)
        lines.append(result["errors"].pop("line"))
    if ids is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_json or os.path.join(tmp, "predictions.json")
            segments = metrics.get("segmentations")
            result["detections"] = write_predictions(path, metrics["predictions"], ids, segments)
            if save_json:
                result["predictions_json"] = save_json
            if coco_json:
                images = sorted({ids.image_id[i] for i, _ in metrics["predictions"]})
                map50, map50_95 = pycocotools_map(coco_json, path, images)
                result["pycocotools"] = {"map50": map50, "map50_95": map50_95}
                line = f"pycocotools: mAP@0.5 {map50:.3f}, mAP@0.5:0.95 {map50_95:.3f}"
                if segments is not None:  # YOLOv5's segment/val.py: the masks' too
                    map50, map50_95 = pycocotools_map(coco_json, path, images, "segm")
                    result["pycocotools"] |= {"mask_map50": map50, "mask_map50_95": map50_95}
                    line += f"; masks {map50:.3f}, {map50_95:.3f}"
                lines.append(line)
    if out:
        lines.append(f"Results saved to {out}")
    emit(result, as_json, [*lines, f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f} on "
                                   f"{result['images']} images"])  # fmt: skip


@main.command(name="model")
@click.argument("arch")
@click.option("--nc", default=None, type=POSITIVE, help="Classes (default: a yaml's nc, else 80; a checkpoint's own).")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=640, show_default=True, type=POSITIVE,
              help="The square image the GFLOPs are for.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def model(arch: str, nc: int | None, imgsz: int, as_json: bool):
    """Build a model and print what it is, as YOLOv5's `python models/yolo.py --cfg`: layers, parameters, GFLOPs,
    strides, anchors; for a model yaml, its layer table. ARCH: n .. x, n6 .. x6, a model yaml file, or a checkpoint
    (fastload's or YOLOv5's: the model it holds).

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
        about, lines = describe(built, spec, imgsz)
        bar.update()
    detect = built.detect
    result = {"model": arch_name(spec), **about, "imgsz": imgsz, "nc": detect.nc,
              "strides": detect.stride.int().tolist(),
              "anchors": (detect.anchors * detect.stride.view(-1, 1, 1)).round(decimals=2).tolist(),
              "names": names, "yaml": spec if isinstance(spec, dict) else None}  # fmt: skip
    lines[-1] += f", strides {result['strides']}, {detect.nc} classes"
    emit(result, as_json, lines)
