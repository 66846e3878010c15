"""The CLI's `fastload val` (YOLOv5's val.py on fastload's validation loader): a checkpoint, an exported model or an
ensemble of checkpoints validated; `--task speed` with several models and `--task study` validate each model alone,
as YOLOv5's val.py does. Registered on `fastload.cli.main`; the work is imported when it runs, so `--help` does not
wait for torch."""

from __future__ import annotations

import os
import tempfile
from functools import partial

import click
from tqdm import tqdm

from fastload.cli import DEVICE_AUTO, POSITIVE, emit, main
from fastload.cli_inference import HALF, WEIGHTS, EnsembleCommand, nms_options, tile_options
from fastload.errors import FastloadError

ONE_RUN = ("plot", "save_json", "save_txt", "save_hybrid", "errors")  # what --task study refuses: one validation's


@main.command(cls=EnsembleCommand)
@WEIGHTS
@click.option("--data", default="", help="Store or dataset to validate on (default: the checkpoint's).")
@click.option("--split", "--task", "split", default="val", show_default=True,
              help="The store's split (YOLOv5's --task; 'speed': val at conf 0.25, IoU 0.45, each model alone; "
              "'study': each model alone at sizes 256 to 1536, study.png).")  # fmt: skip
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
@click.option("--study-sizes", default="", metavar="N,N,...",
              help="With --task study: the image sizes (default: YOLOv5's, 256 to 1536 in steps of 128).")  # fmt: skip
@tile_options
@HALF
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def val(weights: tuple[str, ...], split: str, as_json: bool, study_sizes: str, **options):  # fmt: skip
    """Validate a checkpoint's EMA weights (fastload's, or YOLOv5's such as yolov5s.pt) or an exported model (.onnx,
    .torchscript: fastload's or YOLOv5's): mAP@0.5, mAP@0.5:0.95, precision, recall, per class; optionally
    COCO-format predictions and pycocotools' mAP. An export for one input shape gets square batches of its side.
    Several checkpoints are one ensemble (their boxes pooled for one NMS), except with --task speed and study,
    which validate each alone as YOLOv5's val.py does.

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
      fastload val --weights yolov5n.pt yolov5s.pt --data coco.yaml --task study   # mAP and speed by image size
    """
    if split == "study":
        result, lines = study(weights, options, study_sizes)
    elif split == "speed" and len(weights) > 1:  # YOLOv5's: each model timed alone
        runs = alone(weights, options, split=split)
        result, lines = {"task": "speed", "runs": [r for r, _ in runs]}, [line for _, more in runs for line in more]
    else:
        result, lines = run_val(weights=weights, split=split, **options)
    emit(result, as_json, lines)


def run_val(weights: tuple[str, ...], data: str, split: str, imgsz: int, batch: int, device: str,
            plot: str | None, conf: float, iou: float, max_det: int, save_json: str | None, coco_json: str,
            verbose: bool, single_cls: bool, augment: bool, half: bool, project: str, name: str, exist_ok: bool,
            save_txt: bool, save_conf: bool, save_hybrid: bool, errors: int | None, errors_conf: float,
            mask_ratio: int, overlap: bool | None, workers: int, tile: int | str, tile_overlap: float,
            tile_whole: bool, tile_merge: str, tile_metric: str,
            tile_threshold: float) -> tuple[dict, list[str]]:  # fmt: skip
    """One validation: its JSON result and the lines it prints."""
    from fastload.loader.val_loader import ValLoader
    from fastload.pack.cache import STORES, ensure_store, run_source
    from fastload.pack.packer import source_id
    from fastload.pack.tiles import Tiling
    from fastload.store import NoSplit, open_store
    from yolo.classify import classify_arch, refuse_for_classifier
    from yolo.classify_val import run_classify_val
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
    if classify_arch(getattr(w, "arch", "")):  # YOLOv5's classify/val.py
        refuse_for_classifier(
            weights,
            w,
            plot=plot,
            save_json=save_json,
            save_txt=save_txt or save_hybrid,
            errors=errors,
            augment=augment or None,
            tile=tile or None,
            coco_json=coco_json or None,
        )
        return run_classify_val(w, data, split, imgsz, batch, device, workers, half, verbose, say)
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
    result |= {"data": data, "save_dir": out or None, "labels": None, "hybrid": save_hybrid}
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
    return result, [*lines, f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f} on "
                            f"{result['images']} images"]  # fmt: skip


def alone(weights: tuple[str, ...], options: dict, **fixed) -> list[tuple[dict, list[str]]]:
    """Each model validated alone (YOLOv5's --task speed and study), with `fixed` options; without --data, the
    models after the first on the first one's store (as an ensemble's are)."""
    runs = []
    for path in weights:
        runs.append(run_val(**(options | fixed | {"weights": (path,)})))
        if runs[-1][0].get("task") == "classify":
            raise FastloadError(f"{path}: a classification model: --task speed and study time detection models; "
                                "validate it alone")  # fmt: skip
        options = options | {"data": options["data"] or runs[-1][0]["data"]}
    return runs


def study(weights: tuple[str, ...], options: dict, asked: str = "") -> tuple[dict, list[str]]:
    """YOLOv5's --task study: each model alone on the val split at yolo.study.SIZES (or `asked`: N,N,...), its rows
    written to PROJECT/NAME/study_<data>_<weights>.txt and all of them drawn into study.png."""
    from fastload.loader.files import unique_names
    from yolo.rundir import new_run_dir
    from yolo.study import SIZES, plot_study, study_path, study_row, write_study

    given = [f"--{k.replace('_', '-')}" for k in ONE_RUN if options[k] not in (None, False)]
    if given:
        raise FastloadError(f"{', '.join(given)}: for one validation; --task study validates each model at each "
                            "size")  # fmt: skip
    try:
        sizes = [int(v) for v in asked.split(",")] if asked else list(SIZES)
    except ValueError:
        raise FastloadError(f"--study-sizes {asked}: image sizes, as 256,384,512") from None
    if min(sizes) < 32:
        raise FastloadError(f"--study-sizes {asked}: sizes of 32 pixels or more")
    rows: list[list[dict]] = [[] for _ in weights]  # per model, per size
    keys = ("imgsz", "map50", "map50_95", "precision", "recall", "speed_ms")
    with tqdm(total=len(weights) * len(sizes), desc="study", unit="run", disable=None) as bar:
        for size in sizes:
            for found, (result, _) in zip(rows, alone(weights, options, split="val", imgsz=size), strict=True):
                found.append({k: result[k] for k in keys})
                bar.update()
    out = new_run_dir(options["project"], options["name"], options["exist_ok"])
    files = unique_names([study_path(out, options["data"] or result["data"], path) for path in weights])  # two best.pt
    runs, lines = [], []
    for path, found, file in zip(weights, rows, files, strict=True):
        write_study(file, [study_row(s) for s in found])
        runs.append({"weights": path, "file": file, "sizes": found})
        lines += [f"{path} at {s['imgsz']}: mAP@0.5 {s['map50']:.3f}, mAP@0.5:0.95 {s['map50_95']:.3f}, "
                  f"{s['speed_ms']['inference']:.1f} ms/img" for s in found]  # fmt: skip
    plot = os.path.join(out, "study.png")
    plot_study(runs, plot)
    return {"task": "study", "sizes": sizes, "runs": runs, "plot": plot, "save_dir": out}, [
        *lines, f"Results saved to {out}"]  # fmt: skip
