"""`fastload bench`: loader images/sec after warm-up and where the time goes; optionally against YOLOv5's own
loader (`create_dataloader` from the `yolov5` package) on the same images, hyp, size, batch and workers.

    fastload bench runs/demo/demo.lmdb --device cuda --imgsz 640 --batch 64 --batches 50 --json
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.loader.augment import Hyp
from fastload.loader.classify_loader import TRAIN, ClassifyLoader
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader


def tree_memory_mb(pid: int | None = None) -> tuple[float, float]:
    """(PSS, private PSS) of a process and all its descendants (DALI's source workers included), in MB.

    PSS counts pages shared by forked workers (torch, DALI, the store's page cache) once, not per process.
    The private part (anonymous memory) is what grows with copies per worker and rank; the rest is mapped files,
    mostly the store's pages in the page cache, which the kernel reclaims and every process shares."""
    pid = pid or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    pss = anon = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith("Pss")}
        except (OSError, ValueError, IndexError):
            continue
        pss += fields.get("Pss", 0)
        anon += fields.get("Pss_Anon", 0)
    return pss / 1024, anon / 1024


def _batches(loader, n: int):
    """n batches, going round epochs as needed."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for b in loader:
            yield b
            n -= 1
            if n == 0:
                return
        epoch += 1


class MemorySampler:
    """Peak (PSS, private) of this process tree, sampled in a thread every `every` seconds, so that sampling
    never pauses the consumer (a paused consumer lets a prefetching loader run ahead and look faster)."""

    def __init__(self, every: float = 0.25) -> None:
        self.every, self.peak, self.peak_private = every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastload-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pss, anon = tree_memory_mb()
            self.peak, self.peak_private = max(self.peak, pss), max(self.peak_private, anon)
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def time_loader(batches, total: int, warmup: int, device: str, label: str, on_warm=None) -> dict:
    """Time `total` batches after `warmup`: images per second of wall time over those batches, and per batch the
    wait for it (what a training step would wait for). `on_warm()` is called when the timed batches begin."""
    waits, images = [], 0
    it = iter(batches)
    bar = tqdm(total=warmup + total, desc=label, unit="batch", disable=None, leave=False)
    with MemorySampler() as memory:
        for k in range(warmup + total):
            if k == warmup:
                if on_warm is not None:
                    on_warm()
                start = time.perf_counter()
            t0 = time.perf_counter()
            b = next(it)
            imgs = b.images if hasattr(b, "images") else b[0]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if k >= warmup:
                waits.append(time.perf_counter() - t0)
                images += len(imgs)
            bar.update()
        elapsed = time.perf_counter() - start
    bar.close()
    return {
        "images_per_sec": round(images / elapsed, 1),
        "images": images,
        "seconds": round(elapsed, 3),
        "batch_ms_median": round(1000 * statistics.median(waits), 2),
        "batch_ms_p95": round(1000 * float(np.percentile(waits, 95)), 2),
        "rss_peak_mb": round(memory.peak, 1),
        "private_peak_mb": round(memory.peak_private, 1),
        "batch_ms": [round(1000 * w, 2) for w in waits],
    }


def time_source(source, batches: int = 5) -> float:
    """Median seconds per batch of a DALI source callable run here, in one process: what one source worker spends
    per batch (training: read the records and plan their augmentation; validation: read and place)."""
    seconds = []
    for k in range(batches):
        t0 = time.perf_counter()
        source(SimpleNamespace(iteration=k, epoch_idx=0))
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def yolov5_baseline(
    source_dir: str, imgsz: int, batch: int, workers: int, hyp: Hyp, augment: bool, masks: int = 0, overlap=True
):
    """ultralytics/yolov5's own training loader on the same YOLO folder (mosaic etc. per hyp); with `masks`, its
    segmentation loader (overlap masks that many times smaller, or without `overlap` a whole mask per object)."""
    try:
        from yolov5.utils.dataloaders import create_dataloader
        from yolov5.utils.segment.dataloaders import create_dataloader as create_segment_dataloader
    except ImportError:
        raise FastloadError("--compare yolov5 needs the yolov5 package: pip install 'fastload[compare]'") from None
    hyp_dict = {k: getattr(hyp, k) for k in hyp.__dataclass_fields__}
    common = dict(hyp=hyp_dict, augment=augment, workers=workers, shuffle=True, prefix="yolov5: ")
    if masks:
        loader, _ = create_segment_dataloader(
            source_dir, imgsz, batch, 32, mask_downsample_ratio=masks, overlap_mask=overlap, **common
        )
    else:
        loader, _ = create_dataloader(source_dir, imgsz, batch, 32, **common)
    return (b for _ in itertools.count() for b in loader)  # round the epochs, as _batches does for ours


def yolov5_classify_baseline(folder: str, imgsz: int, batch: int, workers: int, augment: bool):
    """ultralytics/yolov5's classification loader (its classify/train.py's) on the same class folders: albumentations'
    crops, flip and jitter when albumentations is installed (else its CenterCrop only), or CenterCrop (not augment)."""
    try:
        from yolov5.utils.dataloaders import create_classification_dataloader
    except ImportError:
        raise FastloadError("--compare yolov5 needs the yolov5 package: pip install 'fastload[compare]'") from None
    loader = create_classification_dataloader(folder, imgsz, batch, augment=augment, workers=workers)
    return (b for _ in itertools.count() for b in loader)


def run_bench(
    store_path: str,
    device: str = "cpu",
    imgsz: int = 640,
    batch: int = 64,
    batches: int = 20,
    augment: bool = True,
    multi_scale: bool = False,
    workers: int = 2,
    warmup: int | None = None,
    compare: str | None = None,
    seed: int = 0,
    hyp: Hyp | None = None,
    masks: int = 0,
    overlap: bool = True,
) -> dict:
    from fastload.store import open_store

    store = open_store(store_path, "train")
    hyp = hyp or Hyp()
    classify = store.meta.get("task") == "classify"
    if classify:  # YOLOv5's classification loader: crops, flips and jitter (augment) or centre crops
        if multi_scale or masks:
            raise FastloadError(f"{store_path}: a classification store: --multi-scale and --masks are detection's")
        loader = ClassifyLoader(store, imgsz, batch, augment=TRAIN if augment else None, seed=seed, device=device,
                                workers=workers)  # fmt: skip
    elif augment:
        loader = TrainLoader(store, imgsz, batch, hyp=hyp, seed=seed, multi_scale=multi_scale, device=device,
                             workers=workers, mask_ratio=masks, overlap=overlap)  # fmt: skip
    else:
        loader = ValLoader(store, imgsz, batch, rect=False, device=device, workers=workers, mask_ratio=masks,
                           overlap=overlap)  # fmt: skip
    # warm-up: more batches than either loader holds ready (fastload: one per worker, DALI's 2, the thread's 2;
    # YOLOv5: 2 per worker), so the timed batches are made while they are timed
    warmup = 2 * workers + 4 if warmup is None else warmup
    ours = time_loader(_batches(loader, warmup + batches), batches, warmup, device, "fastload", loader.times.clear)
    source_s = time_source(loader.source())
    result = {
        "store": store_path,
        "format": store.format,
        "device": device,
        "imgsz": imgsz,
        "batch": batch,
        "batches": batches,
        "augment": augment,
        "multi_scale": multi_scale,
        "task": "classify" if classify else "detect",
        "polygons": augment and store.has_polygons,  # mosaics boxed from warped polygons: more planning per batch
        "copy_paste": augment and not classify and loader.planner.pastes,  # objects pasted by their polygons
        "masks": masks,  # > 0: segmentation's masks too, this many times smaller than the images
        "overlap": overlap if masks else None,  # YOLOv5's overlap masks, or (False) each object's whole mask
        "hyp": asdict(hyp) if augment and not classify else None,
        "workers": workers,
        "images_per_sec": ours["images_per_sec"],
        "rss_peak_mb": ours["rss_peak_mb"],
        "private_peak_mb": ours["private_peak_mb"],
        "stages": {  # where the time goes, per batch
            "source_ms": round(1000 * source_s, 2),  # one source worker: read bytes + plan (workers run in parallel)
            "source_capacity_images_per_sec": round(workers * batch / source_s, 1),
            **loader.times.summary(),  # pipeline: DALI's run (decode + augment); handover: to torch on the device
            "batch_ms_median": ours["batch_ms_median"],  # what the consumer waited for each batch
            "batch_ms_p95": ours["batch_ms_p95"],
        },
        "batch_ms": ours["batch_ms"],
    }
    if compare == "yolov5":
        source = store.meta.get("pack", {}).get("source", "")
        folder = os.path.join(source, "train" if classify else os.path.join("images", "train"))
        if not os.path.isdir(folder):
            raise FastloadError(f"{store_path}: --compare yolov5 needs the store's source folder ({source or '?'})")
        if classify:
            baseline = yolov5_classify_baseline(folder, imgsz, batch, workers, augment)
        else:
            baseline = yolov5_baseline(folder, imgsz, batch, workers, hyp, augment, masks, overlap)
        base = time_loader(
            baseline,
            batches,
            warmup,
            "cpu",
            "yolov5",
        )
        result |= {
            "baseline": "yolov5.utils.segment.dataloaders.create_dataloader"
            if masks
            else "yolov5.create_classification_dataloader"
            if classify
            else "yolov5.create_dataloader",
            "baseline_images_per_sec": base["images_per_sec"],
            "baseline_rss_peak_mb": base["rss_peak_mb"],
            "baseline_private_peak_mb": base["private_peak_mb"],
            "speedup": round(ours["images_per_sec"] / base["images_per_sec"], 3),
            "baseline_batch_ms": base["batch_ms"],
        }
    return result


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure

    from fastload.loader.draw import save_image

    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    ax.plot(result["batch_ms"], label=f"fastload ({result['images_per_sec']:.0f} img/s)")
    if "baseline_batch_ms" in result:
        ax.plot(result["baseline_batch_ms"], label=f"yolov5 ({result['baseline_images_per_sec']:.0f} img/s)")
    ax.set_xlabel("batch")
    ax.set_ylabel("ms per batch")
    ax.set_title(f"{result['device']}, {result['imgsz']} px, batch {result['batch']}, augment={result['augment']}")
    ax.legend()
    fig.tight_layout()
    save_image(fig, path, dpi=100)
