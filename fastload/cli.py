"""The `fastload` command line: demo-data, pack, info, verify, bench, preview, demo, train, val, detect, export.

`--json` prints exactly one JSON object as the last line of stdout; human output goes to stderr.
Exit codes: 0 done, 1 the job failed, 2 bad usage or bad input (one line naming the file and the reason).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import click
from tqdm import tqdm

from fastload.errors import FastloadError


def emit(result: dict, as_json: bool, lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(result))


POSITIVE = click.IntRange(min=1)


def device_option(value: str) -> str:
    """--device as YOLOv5 also writes it: a GPU's number (0) is cuda:0; several (0,1) are torchrun's job."""
    if value and "," in value:
        raise FastloadError(f"--device {value}: one device a process; for several GPUs run "
                            f"torchrun --nproc-per-node {len(value.split(','))} -m fastload ...")  # fmt: skip
    return f"cuda:{value}" if value.isdigit() else value


DEVICE_CPU = click.option("--device", default="cpu", show_default=True, callback=lambda c, p, v: device_option(v),
                          help="cpu, cuda or cuda:N (or N).")  # fmt: skip
DEVICE_AUTO = click.option("--device", default="", callback=lambda c, p, v: device_option(v),
                           help="cpu, cuda or cuda:N (or N; default: cuda if there is one).")  # fmt: skip
FRACTION = click.FloatRange(min=0, max=1, min_open=True)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastload")
def main() -> None:
    """fastload: packed image stores and GPU data loading for YOLOv5-family detectors."""


@main.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--images", default=500, show_default=True, type=POSITIVE, help="Number of images (train + val).")
@click.option("--seed", default=0, show_default=True, help="Seed; the same seed gives the same files.")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1), help="Share in val.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.1, 8), help="Size (1.0: ~640x480).")
@click.option("--workers", default=_default_workers(), show_default=True, type=POSITIVE, help="Processes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo_data(out: str, images: int, seed: int, val_fraction: float, scale: float, workers: int, as_json: bool):
    """Generate the synthetic detection dataset (YOLO layout + data.yaml) into OUT.

    Example: fastload demo-data runs/demo-data --images 1000 --seed 0
    """
    from fastload.demo_data import DemoConfig, generate

    with tqdm(total=images, desc="demo-data", unit="img", disable=None, leave=False) as bar:
        summary = generate(out, DemoConfig(images, seed, val_fraction, scale), workers, bar.update)
    emit(summary, as_json, [f"wrote {summary['train']} train + {summary['val']} val images to {summary['path']}"])


@main.command()
@click.argument("src", type=str)
@click.option("-o", "--out", required=True, help="Store to write (LMDB file or Zarr directory/URL).")
@click.option("--format", "fmt", type=click.Choice(["lmdb", "zarr"]), default="lmdb", show_default=True)
@click.option("--max-side", type=click.IntRange(min=32), default=None, help="Shrink larger images to this long side.")
@click.option(
    "--quality", type=click.IntRange(50, 100), default=95, show_default=True, help="JPEG quality of re-encoded images."
)
@click.option("--workers", type=click.IntRange(min=1), default=_default_workers(), show_default=True)
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first bad input.")
@click.option("--coco-images", type=click.Path(), default=None, help="Image folder of a COCO JSON source.")
@click.option("--split", default=None, help="Split name for a COCO JSON source (default: from its file name).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def pack(src, out, fmt, max_side, quality, workers, strict, coco_images, split, as_json):
    """Pack SRC (YOLO folder, data.yaml, COCO JSON, or a store to convert) into a store.

    \b
    Examples:
      fastload pack datasets/coco128 -o coco128.lmdb
      fastload pack data.yaml -o data.zarr --format zarr --max-side 1024
      fastload pack instances_val2017.json --coco-images val2017 -o val.lmdb
      fastload pack coco128.lmdb -o coco128.zarr --format zarr
    """
    from fastload.pack import PackOptions
    from fastload.pack import pack as run_pack

    t0 = time.perf_counter()
    opts = PackOptions(fmt, max_side, quality, workers, strict, coco_images, split)
    meta = run_pack(src, out, opts)
    secs = time.perf_counter() - t0
    count = sum(s["count"] for s in meta["splits"].values())
    result = {
        "store": out,
        **meta,
        "format": fmt,
        "images_per_sec": round(count / max(secs, 1e-9), 1),
        "seconds": round(secs, 3),
    }
    lines = [f"packed {count} images into {out} ({fmt}) in {secs:.1f}s, {len(meta['skipped'])} skipped"]
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in meta["skipped"][:20]]
    emit(result, as_json, lines)


@main.command()
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(store: str, as_json: bool):
    """Describe a store: format, splits, classes, skipped inputs, pack parameters.

    Example: fastload info coco128.lmdb
    """
    import numpy as np

    from fastload.store import disk_bytes, open_store, read_meta

    fmt, meta = read_meta(store)
    size = disk_bytes(store)
    result = {"store": store, **meta, "format": fmt, "disk_bytes": size}
    lines = [f"{store}: {fmt} store v{meta['version']}, {(size or 0) / 1e6:.1f} MB on disk"]
    lines.append(f"  names: {meta['names']}")
    for k, v in meta["splits"].items():
        classes = open_store(store, k).boxes[:, 0].astype(np.int64)
        counts = np.bincount(classes, minlength=len(meta["names"])) if len(classes) else np.zeros(0, np.int64)
        v["instances"] = {name: int(n) for name, n in zip(meta["names"], counts, strict=False)}  # boxes per class
        shown = ", ".join(f"{name} {n}" for name, n in v["instances"].items())
        lines.append(f"  {k}: {v['count']} images, {v['bytes'] / 1e6:.1f} MB, {v.get('boxes', 0)} boxes ({shown})")
    lines.append(f"  skipped: {len(meta['skipped'])}, fixed: {meta.get('fixed_count', 0)}")
    emit(result, as_json, lines)


@main.command()
@click.argument("store", type=str)
@click.option("--decode", is_flag=True, help="Also decode every image and check its size.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def verify(store: str, decode: bool, as_json: bool):
    """Check every record's CRC32 (and with --decode, decode every image); exit 1 if any is bad.

    Example: fastload verify coco128.lmdb --decode
    """
    from fastload.verify import verify_store

    result = verify_store(store, decode)
    lines = [f"{store}: {result['checked']} records checked, {len(result['bad'])} bad"]
    lines += [f"  {b['split']}[{b['index']}] {b['path']}: {b['reason']}" for b in result["bad"][:20]]
    emit(result, as_json, lines)
    if not result["ok"]:
        sys.exit(1)


@main.command()
@click.argument("store", required=False)
@DEVICE_CPU
@click.option("--imgsz", default=640, show_default=True, type=POSITIVE)
@click.option("--batch", default=64, show_default=True, type=POSITIVE)
@click.option("--batches", default=20, show_default=True, type=POSITIVE, help="Timed batches (after warm-up).")
@click.option("--workers", default=_default_workers(), show_default=True, type=POSITIVE, help="Source processes.")
@click.option("--no-augment", is_flag=True, help="Letterbox only (the validation pipeline).")
@click.option("--multi-scale", is_flag=True, help="One size per batch in 0.5-1.5x imgsz.")
@click.option("--compare", type=click.Choice(["yolov5"]), default=None, help="Also time YOLOv5's own loader.")
@click.option("--plot", "plot_path", default=None, help="Write a PNG chart of per-batch times.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def bench(store, device, imgsz, batch, batches, workers, no_augment, multi_scale, compare, plot_path, as_json):
    """Measure the loader: images/sec after warm-up, per-batch times, peak RSS with workers.
    STORE may be a dataset (YOLO folder or data.yaml: packed once into runs/stores/); without it, the built-in
    demo dataset (generated and packed once under runs/demo).

    Example: fastload bench runs/demo/demo.lmdb --device cuda --batch 64 --compare yolov5 --json
    """
    from fastload import bench as bench_mod
    from fastload.demo import ensure_demo_store
    from fastload.loader.pipelines import parse_device
    from fastload.pack.cache import STORES, ensure_store

    parse_device(device)  # before generating or timing anything
    store = ensure_store(store, STORES)[0] if store else ensure_demo_store("runs/demo")
    result = bench_mod.run_bench(
        store, device, imgsz, batch, batches, not no_augment, multi_scale, workers, compare=compare
    )
    if plot_path:
        bench_mod.plot(result, plot_path)
    lines = [
        f"fastload: {result['images_per_sec']:.0f} images/s ({device}, {imgsz} px, batch {batch}, "
        f"augment={not no_augment}), peak RSS {result['rss_peak_mb']:.0f} MB with workers"
    ]
    st = result["stages"]
    lines.append(
        f"  per batch: source {st['source_ms']:.1f} ms in one worker ({st['source_capacity_images_per_sec']:.0f} "
        f"img/s with {workers}), DALI run {st['pipeline']['median_ms']:.1f} ms, hand-over "
        f"{st['handover']['median_ms']:.1f} ms, consumer wait {st['batch_ms_median']:.1f} ms (medians)"
    )
    if compare:
        lines.append(f"yolov5:   {result['baseline_images_per_sec']:.0f} images/s; speedup {result['speedup']:.2f}x")
    emit(result, as_json, lines)


@main.command()
@click.argument("store", required=False)
@click.option("-o", "--out", default="preview.jpg", show_default=True, help="Picture to write (.jpg or .png).")
@click.option("--split", default="train", show_default=True)
@click.option("--imgsz", default=640, show_default=True, type=POSITIVE)
@click.option(
    "--batch", default=16, show_default=True, type=POSITIVE, help="Images in the batch (the first 16 are drawn)."
)
@click.option("--no-augment", is_flag=True, help="The validation loader (letterbox, rect batches).")
@click.option("--multi-scale", is_flag=True, help="One size per batch in 0.5-1.5x imgsz.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epoch", default=0, show_default=True, type=click.IntRange(min=0), help="Whose first batch.")
@DEVICE_CPU
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="Source processes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def preview(store, out, split, imgsz, batch, no_augment, multi_scale, seed, epoch, device, workers, as_json):
    """Draw one batch as the model receives it (augmented, with its boxes and class names) into a picture.
    STORE may be a dataset (packed once into runs/stores/); without it, the built-in demo dataset.

    Example: fastload preview runs/demo/demo.lmdb -o batch.jpg --imgsz 640 --epoch 3
    """
    from fastload.demo import ensure_demo_store
    from fastload.loader.pipelines import parse_device
    from fastload.pack.cache import STORES, ensure_store
    from fastload.preview import preview as draw_preview

    parse_device(device)
    store = ensure_store(store, STORES)[0] if store else ensure_demo_store("runs/demo")
    result = draw_preview(store, out, split, imgsz, batch, not no_augment, multi_scale, seed, epoch, device, workers)
    (h, w), kind = result["shape"], "augmented" if result["augment"] else "letterboxed"
    emit(result, as_json, [f"wrote {out}: {min(result['images'], 16)} images of {w}x{h} with {result['boxes']} boxes "
                           f"({kind}, {split}, epoch {epoch})"])  # fmt: skip


@main.command()
@click.argument("out", type=click.Path(file_okay=False), default="runs/demo")
@click.option("--images", default=500, show_default=True, type=POSITIVE, help="Size of the generated dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo(out: str, images: int, as_json: bool):
    """The main job on the built-in default: generate the demo dataset, pack it (LMDB and Zarr),
    verify both stores, measure their read rate and bench the augmenting DALI loader briefly.

    Example: fastload demo runs/demo
    """
    from fastload.demo import run_demo

    result = run_demo(out, images)
    lines = [f"demo dataset: {result['dataset']}"]
    for fmt, r in result["stores"].items():
        lines.append(
            f"  {fmt}: {r['path']} packed at {r['pack_images_per_sec']:.0f} img/s, "
            f"{r['disk_bytes'] / 1e6:.1f} MB, verify ok={r['verify_ok']}, "
            f"random reads {r['read_images_per_sec']:.0f} img/s"
        )
    b = result["loader_bench"]
    lines.append(
        f"  loader (DALI {b['device']}, mosaic, {b['imgsz']} px, batch {b['batch']}): {b['images_per_sec']:.0f} img/s, "
        f"{b['rss_peak_mb']:.0f} MB with workers ({b['private_peak_mb']:.0f} MB private)"
    )
    emit(result, as_json, lines)


MODELS = [*"nsmlx", *(f"yolov5{size}" for size in "nsmlx")]  # YOLOv5's names too
OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSProp"]  # yolo.optim's, named here: `--help` does not wait for torch


def model_size(value: str | None) -> str | None:
    """--model n .. x, yolov5n .. yolov5x, or YOLOv5's --cfg file name (models/yolov5s.yaml) -> the size letter."""
    if value is None:
        return None
    name = os.path.basename(value).removesuffix(".yaml").removesuffix(".yml")
    if name not in MODELS:
        raise click.BadParameter(f"{value!r} is not one of n, s, m, l, x, yolov5n .. yolov5x (or yolov5s.yaml)")
    return name[-1]


def latest_run(project: str) -> str:
    """The newest PROJECT/*/weights/last.pt (YOLOv5's bare --resume), or a FastloadError."""
    import glob

    found = glob.glob(os.path.join(glob.escape(project), "*", "weights", "last.pt"))
    if not found:
        raise FastloadError(f"--resume: no {project}/*/weights/last.pt to continue from (give the checkpoint)")
    return max(found, key=os.path.getmtime)


@main.command()
@click.option("--data", default="", help="Store, YOLO folder or data.yaml (packed once to runs/stores/).")
@click.option("--model", "--cfg", "model", default=None, callback=lambda c, p, v: model_size(v),
              help="n, s, m, l, x (or yolov5s, yolov5s.yaml; default: n, or the size of --weights).")  # fmt: skip
@click.option("--weights", default="", help="Start from these weights (a fastload or YOLOv5 checkpoint).")
@click.option("--epochs", default=30, show_default=True, type=POSITIVE, help="Total epochs (with --resume too).")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=256, show_default=True, type=POSITIVE,
              help="Pixels, rounded up to a multiple of 32.")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default="16", show_default=True,
              help="Total batch, or 'auto' or -1 (AutoBatch on CUDA).")  # fmt: skip
@DEVICE_AUTO
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="DALI source processes per loader.")
@click.option("--multi-scale", is_flag=True, help="One size per batch in 0.5-1.5x imgsz.")
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
@click.option("--freeze", default=0, type=click.IntRange(0, 24), help="Freeze YOLOv5's layers 0..N-1 (10: backbone).")
@click.option("--save-period", default=0, type=click.IntRange(min=0), help="Also keep weights/epochN.pt, every N.")
@click.option("--nominal-batch", default=0, type=click.IntRange(min=0), help="Accumulate to ~N images (default 64).")
@click.option("--no-augment", "augment", flag_value=False, default=True, help="Letterbox only (no mosaic etc.).")
@click.option("--single-cls", is_flag=True, help="Train every class as one ('item'), as YOLOv5's --single-cls.")
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
      fastload train --data data.yaml --hyp hyp.scratch-high.yaml --optimizer AdamW --patience 30 --freeze 10
      fastload train --data data.yaml --epochs 10 --evolve 100    # -> runs/evolve/exp/hyp_evolve.yaml
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
    emit(result, as_json, [f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f} after "
                           f"{result['epochs']} epochs ({result['images_per_sec']:.0f} img/s, data wait "
                           f"{result['data_wait_fraction']:.1%}, loader start {result['loader_startup_s']:.1f} s); "
                           f"weights: {result['weights']}"])  # fmt: skip


@main.command()
@click.option("--weights", required=True, help="A fastload checkpoint (best.pt, last.pt) or a YOLOv5 one (yolov5s.pt).")
@click.option("--data", default="", help="Store or dataset to validate on (default: the checkpoint's).")
@click.option("--split", default="val", show_default=True)
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Image size (default: the checkpoint's).")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default=32, show_default=True, type=POSITIVE)
@DEVICE_AUTO
@click.option("--conf", "--conf-thres", "conf", default=0.001, show_default=True, type=click.FloatRange(0, 1),
              help="NMS confidence.")  # fmt: skip
@click.option("--iou", "--iou-thres", "iou", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="NMS IoU threshold.")  # fmt: skip
@click.option("--max-det", default=300, show_default=True, type=POSITIVE, help="Detections kept per image.")
@click.option("--plot", default="", help="Draw the first batch: PREFIX_labels.jpg and PREFIX_pred.jpg.")
@click.option("--save-json", default="", help="Write the predictions as COCO results (YOLOv5's --save-json).")
@click.option("--coco-json", default="", help="COCO instances JSON: its ids, and pycocotools' mAP beside ours.")
@click.option("--verbose", is_flag=True, help="The per-class table for any class count (default: under 50).")
@click.option("--single-cls", is_flag=True, help="Every class as one (default: as the checkpoint was trained).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def val(weights: str, data: str, split: str, imgsz: int, batch: int, device: str, plot: str, as_json: bool,
        conf: float, iou: float, max_det: int, save_json: str, coco_json: str, verbose: bool,
        single_cls: bool):  # fmt: skip
    """Validate a checkpoint's EMA weights (fastload's, or YOLOv5's such as yolov5s.pt): mAP@0.5, mAP@0.5:0.95,
    precision, recall, per class; optionally COCO-format predictions and pycocotools' mAP.

    \b
    Examples:
      fastload val --weights runs/train/exp/weights/best.pt --json
      fastload val --weights yolov5s.pt --data coco.lmdb --imgsz 640
      fastload val --weights best.pt --data coco.lmdb --save-json preds.json --coco-json instances_val2017.json
    """
    from fastload.loader.val_loader import ValLoader
    from fastload.pack.cache import STORES, ensure_store
    from fastload.store import open_store
    from yolo.coco import CocoIds, pycocotools_map, write_predictions
    from yolo.model import fit_stride
    from yolo.train import resolve_device
    from yolo.val import class_rows, class_table, validate
    from yolo.weights import read_weights

    w = read_weights(weights)
    if not (data or w.config):
        raise FastloadError(f"{weights}: a YOLOv5 checkpoint names no dataset: give --data")
    dev = resolve_device(device)
    data = ensure_store(data, STORES)[0] if data else w.config["data"]
    store = open_store(data, split)
    if single_cls or w.config.get("single_cls"):
        store = store.single_class()
    if len(store.names) != len(w.names):
        raise FastloadError(f"{weights}: {len(w.names)} classes, but {data} has {len(store.names)}")
    model = w.model().to(dev)
    imgsz = imgsz or w.config.get("imgsz", 640)  # YOLOv5's own default for its weights
    loader = ValLoader(store, fit_stride(imgsz), batch, device=str(dev), workers=2)
    if plot:
        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
    ids = CocoIds.from_annotations(coco_json, store) if coco_json else CocoIds.from_store(store)  # before the work
    metrics = validate(model, loader, store, conf, iou, max_det, plot=plot)
    result = {k: metrics[k] for k in ("map50", "map50_95", "precision", "recall", "images", "seconds")}
    rate = metrics["images"] / metrics["seconds"]
    result |= {"weights": weights, "epochs": w.epochs, "images_per_sec": rate, "data_wait_fraction": None}
    result["classes"] = class_rows(metrics, store.names)
    lines = class_table(result["classes"]) if verbose or len(store.names) < 50 else []
    if save_json or coco_json:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_json or os.path.join(tmp, "predictions.json")
            result["detections"] = write_predictions(path, metrics["predictions"], store, ids)
            if save_json:
                result["predictions_json"] = save_json
            if coco_json:
                images = sorted({ids.image_id[store.path_of(i)] for i, _ in metrics["predictions"]})
                map50, map50_95 = pycocotools_map(coco_json, path, images)
                result["pycocotools"] = {"map50": map50, "map50_95": map50_95}
                lines.append(f"pycocotools: mAP@0.5 {map50:.3f}, mAP@0.5:0.95 {map50_95:.3f}")
    emit(result, as_json, [*lines, f"mAP@0.5 {result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f} on "
                                   f"{result['images']} images"])  # fmt: skip


@main.command()
@click.argument("sources", nargs=-1)
@click.option("--source", "more", multiple=True, help="An image file or folder, as YOLOv5's --source (repeatable).")
@click.option("--weights", required=True, help="A fastload checkpoint (best.pt, last.pt) or a YOLOv5 one (yolov5s.pt).")
@click.option("--project", default="runs/detect", show_default=True)
@click.option("--name", default="exp", show_default=True, help="Results go to PROJECT/NAME/ (taken: NAME2, ...).")
@click.option("--exist-ok", is_flag=True, help="Write into PROJECT/NAME even if it exists.")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Long side, rounded up to 32 (default: the checkpoint's training size; YOLOv5's: 640).")  # fmt: skip
@click.option("--conf", "--conf-thres", "conf", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Confidence threshold.")  # fmt: skip
@click.option("--iou", "--iou-thres", "iou", default=0.45, show_default=True, type=click.FloatRange(0, 1),
              help="NMS IoU threshold.")  # fmt: skip
@click.option("--max-det", default=1000, show_default=True, type=POSITIVE, help="Most boxes per image.")
@click.option("--classes", default="", help="Keep only these class ids, e.g. 0,2.")
@click.option("--agnostic-nms", is_flag=True, help="Suppress overlapping boxes across classes.")
@click.option("--batch", default=16, show_default=True, type=POSITIVE, help="Images per batch (by aspect ratio).")
@DEVICE_AUTO
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="DALI source processes.")
@click.option("--save-txt", is_flag=True, help="Write labels/<image>.txt: cls cx cy w h, normalised.")
@click.option("--save-conf", is_flag=True, help="With --save-txt: the confidence as a sixth column.")
@click.option("--nosave", is_flag=True, help="Do not write the pictures with boxes.")
@click.option("--save-crop", is_flag=True, help="Write each box's crop to crops/<class>/<image>.jpg.")
@click.option("--save-csv", is_flag=True, help="Write predictions.csv: image, class name, confidence.")
@click.option("--line-thickness", default=0, type=click.IntRange(min=0), help="Box lines (px; default: by size).")
@click.option("--hide-labels", is_flag=True, help="Draw the boxes without their names.")
@click.option("--hide-conf", is_flag=True, help="Draw the names without the confidences.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def detect(sources: tuple[str, ...], more: tuple[str, ...], weights: str, project: str, name: str, classes: str,
           agnostic_nms: bool, nosave: bool, as_json: bool, **options):  # fmt: skip
    """Detect objects in images (files, or folders searched recursively), as YOLOv5's detect.py: pictures with
    boxes in PROJECT/NAME/, and with --save-txt one YOLO label file per image. Files that are not usable images
    are reported and passed over.

    \b
    Examples:
      fastload detect runs/demo/data/images/val --weights runs/train/exp/weights/best.pt
      fastload detect photos/ extra.jpg --weights yolov5s.pt --conf 0.4 --save-txt --json
    """
    from yolo.detect import DetectOptions
    from yolo.detect import detect as run_detect

    sources = (*sources, *more)
    if not sources:
        raise click.UsageError("give the images: SOURCES... or --source PATH")

    try:
        wanted = [int(c) for c in classes.replace(",", " ").split()] or None
    except ValueError:
        raise FastloadError(f"--classes must be class ids such as 0,2, not {classes!r}") from None
    opts = DetectOptions(out=os.path.join(project, name), classes=wanted, agnostic=agnostic_nms,
                         save_images=not nosave, **options)  # fmt: skip
    result = run_detect(weights, list(sources), opts)
    skipped = f", {len(result['skipped'])} files skipped" if result["skipped"] else ""
    rate = f"{result['images_per_sec']:.1f} img/s on {result['device']}"
    line = f"{result['detections']} boxes in {result['images']} images{skipped} ({rate}): {result['out']}"
    emit(result, as_json, [line])


@main.command()
@click.option("--weights", required=True, help="A fastload checkpoint (best.pt, last.pt) or a YOLOv5 one (yolov5s.pt).")
@click.option("--include", default="onnx", show_default=True, type=click.Choice(["onnx", "torchscript"]),
              help="The format, as YOLOv5's --include.")  # fmt: skip
@click.option("-o", "--out", default="", help="The file (default: beside the weights, .onnx or .torchscript).")
@click.option("--imgsz", "--img", "--img-size", "imgsz", default=0, type=click.IntRange(min=0),
              help="Input side, rounded up to 32 (default: the checkpoint's training size; YOLOv5's 640).")  # fmt: skip
@click.option("--batch", "--batch-size", "batch", default=1, show_default=True, type=POSITIVE, help="Input batch.")
@click.option("--dynamic", is_flag=True, help="Any batch, height and width (multiples of 32) instead.")
@click.option("--opset", default=None, type=click.IntRange(min=18), help="ONNX opset (default: torch's, 20 today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def export(weights: str, include: str, out: str, imgsz: int, batch: int, dynamic: bool, opset: int | None,
           as_json: bool):  # fmt: skip
    """Export a checkpoint's EMA weights to ONNX (or TorchScript) as YOLOv5's export.py does: input `images` (batch
    x 3 x H x W, RGB in [0, 1]), output `output0` (batch x anchors x 5+nc: cx, cy, w, h in pixels, objectness,
    class scores), YOLOv5's `stride` and `names` metadata; checked against PyTorch (ONNX: with ONNX Runtime).
    ONNX needs `pip install 'fastload[export]'`.

    \b
    Examples:
      fastload export --weights runs/train/exp/weights/best.pt              # -> runs/train/exp/weights/best.onnx
      fastload export --weights yolov5s.pt --imgsz 640 --dynamic -o yolov5s.onnx --json
      fastload export --weights best.pt --include torchscript                # -> best.torchscript
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
    if include == "torchscript":
        emit(result, as_json, [f"{result['path']}: TorchScript, input {batch} x 3 x {result['imgsz']} x "
                               f"{result['imgsz']}, output {result['output']} (vs PyTorch: max difference "
                               f"{result['max_error']:.1e})"])  # fmt: skip
        return
    check = f"max difference {result['max_error']:.1e}" if result["checked"] else "not checked: no onnxruntime"
    side = result["imgsz"]
    emit(result, as_json, [f"{result['path']}: opset {result['opset']}, input {result['batch']} x 3 x {side} x {side}, "
                           f"output {result['output']} (ONNX Runtime vs PyTorch: {check})"])  # fmt: skip
