"""The CLI's loader commands: `fastload bench` (the loader's speed, against YOLOv5's with --compare) and `preview`
(a batch drawn). Registered on `fastload.cli.main`; the work is imported when a command runs."""

from __future__ import annotations

import click

from fastload.cli import DEVICE_CPU, POSITIVE, default_workers, emit, main


def augment_hyp(path: str):
    """The augmentation settings of a YOLOv5 hyp file (or of one of its files by name); "": scratch-low's."""
    from fastload.loader.augment import Hyp
    from yolo.hyp import read_hyp, split_hyp

    return split_hyp(read_hyp(path))[2] if path else Hyp()


@main.command()
@click.argument("store", required=False)
@DEVICE_CPU
@click.option("--imgsz", default=640, show_default=True, type=POSITIVE)
@click.option("--batch", default=64, show_default=True, type=POSITIVE)
@click.option("--batches", default=20, show_default=True, type=POSITIVE, help="Timed batches (after warm-up).")
@click.option("--workers", default=default_workers(), show_default=True, type=POSITIVE, help="Source processes.")
@click.option("--no-augment", is_flag=True, help="Letterbox only (the validation pipeline).")
@click.option("--multi-scale", is_flag=True, help="One size per batch in 0.5-1.5x imgsz.")
@click.option("--compare", type=click.Choice(["yolov5"]), default=None, help="Also time YOLOv5's own loader.")
@click.option("--masks", is_flag=True, help="Also make a -seg model's masks (YOLOv5's overlap masks, 4x smaller).")
@click.option("--no-overlap", is_flag=True, help="With --masks: each object's whole mask (YOLOv5's --no-overlap).")
@click.option("--hyp", default="", help="A YOLOv5 hyp file (or hyp.scratch-high.yaml, ...); default: scratch-low's.")
@click.option("--plot", "plot_path", default=None, help="Write a PNG chart of per-batch times.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def bench(
    store, device, imgsz, batch, batches, workers, no_augment, multi_scale, compare, masks, no_overlap, hyp,
    plot_path, as_json
):  # fmt: skip
    """Measure the loader: images/sec after warm-up, per-batch times, peak RSS with workers.
    STORE may be a dataset (YOLO folder or data.yaml: packed once into runs/stores/); without it, the built-in
    demo dataset (generated and packed once under runs/demo). --hyp times its augmentation (mixup, rotation,
    copy_paste: what each costs); --masks, a segmentation run's masks. A classification store (class folders) times
    the classification loader (224 px unless --imgsz).

    \b
    Examples:
      fastload bench runs/demo/demo.lmdb --device cuda --batch 64 --compare yolov5 --json
      fastload bench imagenette.lmdb --device cuda --batch 256 --compare yolov5   # a classification store
    """
    from fastload import bench as bench_mod
    from fastload.demo import ensure_demo_store
    from fastload.loader.pipelines import parse_device
    from fastload.pack.cache import STORES, ensure_store
    from fastload.store import read_meta

    parse_device(device)  # before generating or timing anything
    augment = augment_hyp(hyp)
    store = ensure_store(store, STORES)[0] if store else ensure_demo_store("runs/demo")
    if click.get_current_context().get_parameter_source("imgsz").name == "DEFAULT":
        imgsz = 224 if read_meta(store)[1].get("task") == "classify" else imgsz  # YOLOv5's classify size
    result = bench_mod.run_bench(
        store,
        device,
        imgsz,
        batch,
        batches,
        not no_augment,
        multi_scale,
        workers,
        compare=compare,
        hyp=augment,
        masks=4 if masks or no_overlap else 0,
        overlap=not no_overlap,
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
@click.option("--hyp", default="", help="A YOLOv5 hyp file (or hyp.scratch-high.yaml, ...); default: scratch-low's.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epoch", default=0, show_default=True, type=click.IntRange(min=0), help="Whose first batch.")
@click.option("--masks", is_flag=True, help="Tint each object's mask (a -seg model's loader makes them).")
@DEVICE_CPU
@click.option("--workers", default=2, show_default=True, type=POSITIVE, help="Source processes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def preview(
    store, out, split, imgsz, batch, no_augment, multi_scale, hyp, seed, epoch, masks, device, workers, as_json
):
    """Draw one batch as the model receives it (augmented, with its boxes and class names) into a picture.
    STORE may be a dataset (packed once into runs/stores/); without it, the built-in demo dataset.

    Example: fastload preview runs/demo/demo.lmdb -o batch.jpg --imgsz 640 --epoch 3 --hyp hyp.scratch-high.yaml
    """
    from fastload.demo import ensure_demo_store
    from fastload.loader.pipelines import parse_device
    from fastload.pack.cache import STORES, ensure_store
    from fastload.preview import preview as draw_preview
    from fastload.store import read_meta

    parse_device(device)
    augment = augment_hyp(hyp)
    store = ensure_store(store, STORES)[0] if store else ensure_demo_store("runs/demo")
    if click.get_current_context().get_parameter_source("imgsz").name == "DEFAULT":
        imgsz = 224 if read_meta(store)[1].get("task") == "classify" else imgsz  # YOLOv5's classify size
    result = draw_preview(
        store, out, split, imgsz, batch, not no_augment, multi_scale, seed, epoch, device, workers, augment, masks
    )
    (h, w), kind = result["shape"], "augmented" if result["augment"] else "letterboxed"
    what = "titled by class" if result["task"] == "classify" else f"with {result['boxes']} boxes"
    emit(result, as_json, [f"wrote {out}: {min(result['images'], 16)} images of {w}x{h} {what} ({kind}, {split}, "
                           f"epoch {epoch})"])  # fmt: skip
