"""The stores a training run reads: the built-in demo's, a store given, or a dataset packed into the cache (again
from the dataset when a later pack removed a resumed run's store), checked for what training needs."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

from fastload.errors import FastloadError
from fastload.pack.cache import ensure_store, packed_line, run_source
from fastload.pack.packer import source_id
from fastload.pack.tiles import Tiling
from fastload.store import Store, open_store, read_meta
from yolo.yaml_model import segment_arch


def say(message: str) -> None:
    """A line for the user, on stderr (stdout carries only --json's object), between progress bars."""
    tqdm.write(message, file=sys.stderr)


def whole_val_store(cfg, progress: bool) -> Store:
    """The val split of the run's dataset packed whole (cfg.val_whole: a run on its tiles validates the pictures by
    sliced inference): its cache store beside the tiled one, packed now if it is not there."""
    stores = os.path.join(os.path.dirname(os.path.normpath(cfg.project)), "stores")
    view = {"autosplit": cfg.autosplit, "classes": cfg.classes, "background": cfg.background, "dedupe": cfg.dedupe}
    path, report = ensure_store(run_source(cfg.dataset, "", say), stores, **view)
    if report is not None and progress:
        say(packed_line(path, report))
    return open_store(path, "val")


def run_stores(cfg, rank: int, progress: bool) -> tuple[Store, Store]:
    """(train, val) of the run's store. Sets cfg.data to the store's absolute path (and cfg.dataset to the dataset
    packed into it); a one-line FastloadError when the run cannot train on it, warnings for what it will lack."""
    dataset = None  # a dataset packed into cfg.data
    if cfg.val_whole and not cfg.tile:  # (a store given with --tile is refused below)
        raise FastloadError("--val-whole validates the whole pictures of a dataset trained on as tiles: give the "
                            "dataset (--data) with --tile")  # fmt: skip
    if not cfg.data:  # the built-in demo run: a 400-image dataset needs every batch to be an optimizer step
        from fastload.demo import ensure_demo_store

        classify = isinstance(cfg.model, str) and cfg.model.endswith("-cls")  # a classifier: class folders
        cfg.data = ensure_demo_store("runs/demo", polygons=segment_arch(cfg.model), classify=classify)
        cfg.nominal_batch = cfg.nominal_batch or cfg.batch
    else:  # a dataset folder or data.yaml: packed once (by rank 0) and reused while its files are unchanged
        stores = os.path.join(os.path.dirname(os.path.normpath(cfg.project)), "stores")  # runs/stores
        given = run_source(cfg.data, cfg.dataset, say if rank == 0 else len)
        view = {"autosplit": cfg.autosplit, "classes": cfg.classes, "background": cfg.background, "dedupe": cfg.dedupe,
                "tile": Tiling(cfg.tile, cfg.tile_overlap, whole=cfg.tile_whole) if cfg.tile else None}  # fmt: skip
        packed, report = ensure_store(given, stores, rank == 0, **view)
        dataset, cfg.data = (given if packed != given else None), packed
        if dataset:
            cfg.dataset = source_id(dataset)  # its absolute path, or its URL
        if report is not None and progress:
            say(packed_line(cfg.data, report))
    picks = ((cfg.autosplit, "--autosplit splits"), (cfg.classes, "--classes picks classes of"),
             (cfg.background, "--background thins"), (cfg.dedupe or None, "--dedupe thins"),
             (cfg.tile or None, "--tile cuts the images of"))  # fmt: skip
    for given_option, what in picks:
        if given_option is not None and not (dataset or cfg.dataset):  # a store (a resumed run's names its dataset)
            raise FastloadError(f"{cfg.data or 'the demo store'}: a store; {what} a dataset as it is packed: give "
                                "its folder or data.yaml")  # fmt: skip
    if "://" not in cfg.data:  # the checkpoint's config names the store wherever `fastload val` runs from
        cfg.data = os.path.abspath(cfg.data)
    meta = read_meta(cfg.data)[1]
    splits = meta["splits"]
    val = "test" if meta.get("task") == "classify" and "val" not in splits and "test" in splits else "val"
    if val == "test" and rank == 0 and progress:  # YOLOv5's classify/train.py validates on test (cifar10's only)
        say(f"{cfg.data}: no val split: validating on test")
    if "train" not in splits or val not in splits:  # as YOLOv5, whose data.yaml must name both
        lacking = " or ".join(repr(s) for s in ("train", "val") if s not in splits)
        named = f"{dataset} (packed as {cfg.data})" if dataset else cfg.data
        how = "--autosplit 0.9,0.1 (90% of the images to train, 10% to val), or " if dataset else ""
        raise FastloadError(f"{named}: no {lacking} split (has {', '.join(splits)}); train needs both: {how}a "
                            f"data.yaml whose `val:` names the val images (or the train images, as YOLOv5's "
                            f"coco128.yaml does)")  # fmt: skip
    train_store, val_store = open_store(cfg.data, "train"), open_store(cfg.data, val)
    if train_store.meta.get("task") == "classify":  # (yolo.classify_train checks what it needs)
        return train_store, val_store
    if not train_store.box_counts.any():  # as YOLOv5, which will not start without labels; before a run folder
        missing = train_store.meta["splits"]["train"].get("missing_labels", 0)
        raise FastloadError(f"{cfg.data}: no boxes in the train split ({len(train_store)} images, {missing} without a "
                            f"label file; see `fastload info {cfg.data}`): nothing to learn")  # fmt: skip
    if not val_store.box_counts.any() and rank == 0 and progress:  # YOLOv5 warns too; the run is still of use
        say(f"warning: no boxes in {cfg.data}'s val split ({len(val_store)} images): every mAP will be 0 and best.pt "
            "the last epoch's")  # fmt: skip
    if segment_arch(cfg.model) and not train_store.has_polygons and rank == 0 and progress:
        say(f"warning: {cfg.data} has box labels only: a segmentation model learns each box's rectangle as its mask "
            "(pack polygon labels: YOLOv5's segment rows or COCO polygons)")  # fmt: skip
    if cfg.hyp["copy_paste"] and not train_store.has_polygons and rank == 0 and progress:
        say(f"warning: hyp copy_paste {cfg.hyp['copy_paste']:g} pastes objects by their polygons, and {cfg.data} has "
            "none (box labels only): nothing is pasted, as in YOLOv5")  # fmt: skip
    return train_store, val_store
