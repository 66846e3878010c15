"""`pack --tile SIZE`: large images (aerial, drone, microscopy, satellite) cut into overlapping SIZE x SIZE tiles,
each a record with the objects it shows, as SAHI slices a dataset. Resizing a 4000-pixel image to a 640 input
shrinks a 20-pixel car to 3 pixels; a tile keeps its pixels. The dataset is packed whole first (so autosplit,
--classes and --dedupe see images, and the tiles of one image stay in one split), then cut record by record.

    fastload pack visdrone/ -o tiles.lmdb --tile 640 --tile-overlap 0.2
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
from PIL import Image

from fastload.errors import FastloadError
from fastload.pack.images import encode_jpeg
from fastload.pack.thinning import Thinning
from fastload.pool import died_reading, ordered_map
from fastload.store import borrowed, open_store, open_writer, read_meta
from fastload.store.record import Record
from fastload.store.tempfiles import remove_stale_partials
from fastload.verify import problem_of


@dataclass(frozen=True)
class Tiling:
    """SIZE x SIZE tiles overlapping by `overlap` of a side; an object is kept in a tile where at least
    `min_visible` of its area shows (YOLOv5's box_candidates keep 0.1 of a box cut by its augmentation)."""

    size: int
    overlap: float = 0.2
    min_visible: float = 0.1
    whole: bool = False  # also keep each cut picture whole: objects larger than a tile are learned, shrunk

    def __post_init__(self) -> None:
        if self.size < 32:
            raise FastloadError(f"--tile {self.size}: a tile's side is 32 pixels or more")
        if not 0 <= self.overlap < 1:
            raise FastloadError(f"--tile-overlap {self.overlap:g}: a share of the side in [0, 1)")
        if not 0 < self.min_visible <= 1:
            raise FastloadError(f"--tile-min-visible {self.min_visible:g}: a share of an object's area in (0, 1]")

    def windows(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """The tiles of an h x w image as (x0, y0, x1, y1) pixels, row by row: SAHI's grid, the last tile of a row
        or column moved back inside the image, so every tile is SIZE x SIZE (or the image's side when smaller)."""
        xs, ys = _starts(w, self.size, self.overlap), _starts(h, self.size, self.overlap)
        return [(x, y, min(x + self.size, w), min(y + self.size, h)) for y in ys for x in xs]


def _starts(length: int, size: int, overlap: float) -> list[int]:
    if length <= size:
        return [0]
    step = max(1, size - int(overlap * size))
    return [*range(0, length - size, step), length - size]


def clip_polygon(points: np.ndarray, window: tuple[float, float, float, float]) -> np.ndarray:
    """The part of the polygon `points` ([k, 2] pixels) inside the rectangle `window` (Sutherland-Hodgman)."""
    x0, y0, x1, y1 = window
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if len(points) == 0:
            break
        inside = points[:, axis] >= bound if keep_above else points[:, axis] <= bound
        out, prev, prev_in = [], points[-1], inside[-1]
        for p, p_in in zip(points, inside, strict=True):
            if p_in != prev_in:  # the edge crosses the bound: where
                t = (bound - prev[axis]) / (p[axis] - prev[axis])
                out.append(prev + t * (p - prev))
            if p_in:
                out.append(p)
            prev, prev_in = p, p_in
        points = np.asarray(out, np.float64).reshape(-1, 2)
    return points


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def cut(rec: Record, window: tuple[int, int, int, int], min_visible: float) -> tuple[np.ndarray, Record]:
    """The objects of `rec` kept in the tile `window`: (a mask of which, the tile's boxes and polygons as a Record
    without its image). With polygons, the share visible is the polygon's and the box bounds the part inside."""
    h, w = rec.size
    x0, y0, x1, y1 = window
    tw, th = x1 - x0, y1 - y0
    b = rec.boxes.astype(np.float64)
    xyxy = np.stack([(b[:, 1] - b[:, 3] / 2) * w, (b[:, 2] - b[:, 4] / 2) * h,
                     (b[:, 1] + b[:, 3] / 2) * w, (b[:, 2] + b[:, 4] / 2) * h], axis=1)  # fmt: skip
    inner = np.concatenate([np.maximum(xyxy[:, :2], (x0, y0)), np.minimum(xyxy[:, 2:], (x1, y1))], axis=1)
    extent = np.clip(inner[:, 2:] - inner[:, :2], 0, None)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    shown = extent[:, 0] * extent[:, 1] / np.maximum(area, 1e-12)
    keep = (shown >= min_visible) & (extent > 0).all(axis=1)
    polygons = None
    if rec.segments is not None:
        polygons = []
        for j in np.flatnonzero(keep):
            full = rec.segments[j].astype(np.float64) * (w, h)
            part = clip_polygon(full, window)
            whole = polygon_area(full)
            if len(part) < 3 or (whole > 0 and polygon_area(part) / whole < min_visible):
                keep[j] = False
                continue
            inner[j] = (*part.min(axis=0), *part.max(axis=0))
            polygons.append(((part - (x0, y0)) / (tw, th)).astype(np.float32))
    inner = inner[keep] - (x0, y0, x0, y0)
    xywh = np.concatenate([(inner[:, :2] + inner[:, 2:]) / 2, inner[:, 2:] - inner[:, :2]], axis=1) / (tw, th, tw, th)
    boxes = np.concatenate([b[keep, :1], np.clip(xywh, 0, 1)], axis=1).astype(np.float32)
    return keep, Record(b"", boxes, (th, tw), "", segments=polygons)


def tile_path(path: str, window: tuple[int, int, int, int]) -> str:
    """A tile's path: its image's, with the window in pixels (SAHI's names): a/b.png -> a/b_0_0_640_640.jpg."""
    return f"{os.path.splitext(path)[0]}_{'_'.join(map(str, window))}.jpg"


def tile_record(rec: Record, tiling: Tiling, quality: int) -> tuple[list[Record], int]:
    """The tiles of one record, each re-encoded as a JPEG of `quality` (with `tiling.whole`, then the record
    itself), and how many of its objects no tile kept (larger than a tile by more than min_visible allows). A record
    that fits one tile is kept as it is."""
    windows = tiling.windows(*rec.size)
    if len(windows) == 1:
        rec.image = bytes(rec.image)  # a store's memoryview: bytes, to go through a worker's pipe
        return [rec], 0
    with Image.open(io.BytesIO(rec.image)) as im:
        im.load()
        seen = np.zeros(len(rec.boxes), bool)
        tiles = []
        for window in windows:
            keep, tile = cut(rec, window, tiling.min_visible)
            seen |= keep
            tile.image = encode_jpeg(im.crop(window), quality)
            tile.path = tile_path(rec.path, window)
            tile.crc32 = tile.compute_crc()
            tiles.append(tile)
    if tiling.whole:
        rec.image = bytes(rec.image)
        tiles.append(rec)
    return tiles, int((~seen).sum())


def _tile_one(i: int, store, tiling: Tiling, quality: int) -> tuple[list[Record], int] | dict:
    """Record i of `store` cut into tiles (a worker's job), or what the report lists for a damaged one."""
    try:
        rec = store.get(i)
        problem = problem_of(rec)
    except Exception as e:
        rec, problem = None, str(e) or type(e).__name__
    if problem is not None:
        path = rec.path if rec is not None else f"{store.split}[{i}]"
        return {"path": path, "reason": f"in the store being tiled: {problem}"}
    try:
        return tile_record(rec, tiling, quality)
    except (OSError, ValueError) as e:
        return {"path": rec.path, "reason": f"cannot be tiled: {e}"}


def pack_tiled(src, out: str, opts, quiet: bool = False, source=None) -> dict:
    """`pack` with `opts.tile`: a dataset packed whole into a temporary store beside `out`, which is then cut into
    `out` and removed (a store given as `src` is cut as it is). Returns the metadata `out` keeps."""
    from fastload.pack.packer import is_store, pack  # the packer hands tiled packs here

    t0 = time.perf_counter()
    one = src if isinstance(src, str) else src[0] if len(src) == 1 else None
    if one is not None and is_store(one):
        _, meta = read_meta(one)
        if meta.get("pack", {}).get("tile"):
            raise FastloadError(f"{one}: already tiled ({meta['pack']['tile']['size']} px); tile the dataset anew")
        for given, what in ((opts.autosplit, "--autosplit splits"), (opts.classes, "--classes picks classes of"),
                            (opts.dedupe or None, "--dedupe thins")):  # fmt: skip
            if given is not None:
                raise FastloadError(f"{one}: a store is tiled record for record; {what} a dataset as it is packed: "
                                    "give its folder or data.yaml")  # fmt: skip
        return _tile_store(one, out, opts, quiet, t0, {"tiled_from": os.path.abspath(one)})
    if "://" in out:  # the whole pictures go to a local temporary store
        whole = os.path.join(tempfile.gettempdir(), f"fastload-untiled-{os.getpid()}.lmdb")
    else:
        remove_stale_partials(out, "untiled")  # left by a tiled pack that was killed
        whole = f"{out}.untiled-{os.getpid()}"
    try:
        pack(src, whole, replace(opts, tile=None, fmt="lmdb", background=None, reuse=None), quiet, source)
        with borrowed(whole):
            return _tile_store(whole, out, opts, quiet, t0, {})
    finally:
        if os.path.lexists(whole):
            os.remove(whole)


def _tile_store(src: str, out: str, opts, quiet: bool, t0: float, extra: dict) -> dict:
    """Cut every record of the store `src` into `out` (opts.tile; opts.background thins the train split's tiles
    without objects); the metadata keeps src's, with the tiling and per split the images, tiles and lost objects."""
    from fastload.pack.packer import Report, pack_meta, progress_bar

    tiling: Tiling = opts.tile
    _, meta = read_meta(src)
    if meta.get("task") == "classify":
        source = meta.get("pack", {}).get("source") or src
        raise FastloadError(f"{source}: a classification dataset (class folders): --tile cuts pictures into tiles "
                            "with their objects; pack the class folders as they are")  # fmt: skip
    report = Report(skipped=list(meta.get("skipped", [])), fixed=list(meta.get("fixed", [])))
    report.fixed_count = meta.get("fixed_count", 0)
    thinning = Thinning(opts.background, False)
    writer = open_writer(out, opts.fmt, size_hint=int(1.5 * sum(s["bytes"] for s in meta["splits"].values())))
    try:
        for split, info in meta["splits"].items():
            store = open_store(src, split)
            writer.begin_split(split)
            images = lost = dropped = 0
            work = partial(_tile_one, store=store, tiling=tiling, quality=opts.quality)
            died = partial(_died, store)
            with progress_bar(len(store), f"tile {split}", quiet) as bar:
                for got in ordered_map(work, range(len(store)), opts.workers, batch=1, died=died):  # MBs of tiles
                    bar.update()
                    if isinstance(got, dict):
                        if opts.strict:
                            raise FastloadError(f"{got['path']}: {got['reason']} (--strict)")
                        report.skipped.append(got)
                        continue
                    tiles, missed = got
                    images, lost = images + 1, lost + missed
                    for tile in tiles:
                        if thinning.drop(split, tile) is not None:
                            dropped += 1
                            continue
                        writer.add(tile, None)
                        if len(tile.boxes):
                            report.max_class = max(report.max_class, int(tile.boxes[:, 0].max()))
            counts = {k: v for k, v in info.items() if k in ("missing_labels", "empty_labels", "duplicates_dropped")}
            report.splits[split] = {**writer.end_split(), **counts, "images": images, "objects_lost": lost}
            report.splits[split] |= thinning.counted(split, {"background": dropped})
        setting = asdict(tiling)
        fingerprint = hashlib.sha256(f"{meta['fingerprint']}\0{sorted(setting.items())}".encode()).hexdigest()
        new = pack_meta(meta["names"], report, "store", src, opts, fingerprint, time.perf_counter() - t0)
        new["pack"] = {**meta.get("pack", {}), **extra, "tile": setting, "seconds": new["pack"]["seconds"]}
        if opts.background is not None:
            new["pack"]["background"] = opts.background
        if "duplicates" in meta:
            new["duplicates"] = meta["duplicates"]
        writer.finish(new)
    except BaseException:
        writer.abort()
        raise
    return new


def _died(store, i: int, how: str) -> dict:
    return {"path": store.path_of(i), "reason": died_reading(how)}
