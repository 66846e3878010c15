"""A dataset given where a store is expected (`fastload train --data dataset/` or `data.yaml`): packed once into
an LMDB store under a cache folder, named by a key of its files' names, sizes and modification times, and reused
while they are unchanged. Many processes (torchrun ranks) may ask at once: one packs, the others wait for it.

When the dataset changes, the new store copies the records of unchanged files from the previous one, which is then
removed unless a process still uses it: each process holds a shared lock (flock) on the cache stores it was given,
and the pruning takes only those it can lock exclusively. The cache keeps one store per dataset, not one per edit."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, replace

from fastload.errors import FastloadError
from fastload.fetch import is_url
from fastload.label_check import KINDS, check_labels
from fastload.pack.archive import archive_kind, archive_stem, several_archives
from fastload.pack.autosplit import autosplit as split_anew
from fastload.pack.classes import select_classes
from fastload.pack.packer import PackOptions, is_store, pack, packed_from
from fastload.pack.sources import Source, find_source
from fastload.pack.tiles import Tiling
from fastload.store.record import FORMAT_VERSION

STORES = "runs/stores"  # where `bench` and `val` pack a dataset; `train` uses the stores/ beside its --project
CACHED = re.compile(r".+-[0-9a-f]{12}\.lmdb")  # <name>-<key>.lmdb: a store this cache made
_HELD: dict[str, int] = {}  # cache store -> the descriptor whose shared lock marks it in use by this process


def source_key(
    src: str,
    source: Source,
    classes: str | None = None,
    background: float | None = None,
    dedupe: bool | str = False,
    tile: Tiling | None = None,
) -> str:
    """sha256 over the store format and the dataset's listing (`find_source(src)`): per split, per image (and label
    file if there is one) its absolute path, size and modification time (the same key for `data/` given from its
    parent folder and for /abs/data, which val passes from the checkpoint). Any added, removed, replaced or touched
    file changes it, and so does a new store format (a store packed by an older fastload lacks what the new one
    keeps)."""
    key = hashlib.sha256(f"{os.path.abspath(src)}\0v{FORMAT_VERSION}".encode())  # a new format: packed anew
    key.update(json.dumps([source.names, classes]).encode())  # names edited in the data.yaml, or others chosen
    if background is not None:
        key.update(f"background {background!r}".encode())
    if dedupe:
        key.update(b"dedupe" + (f" {dedupe}".encode() if isinstance(dedupe, str) else b""))
    if tile is not None:
        key.update(f"tile {sorted(asdict(tile).items())}".encode())
    for path in source.label_files:  # a COCO folder's JSONs
        st = os.stat(path)
        key.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for split, paths in source.split_images.items():
        key.update(f"[{split}]\n".encode())
        for path in paths:
            for p in (path, source.label_of(path)):
                if p is None:
                    continue
                try:
                    st = os.stat(p)
                    key.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                except OSError:
                    key.update(f"{os.path.abspath(p)}\0-\n".encode())
    return key.hexdigest()


def wait_for_store(path: str, src: str, patience: float = 600.0, poll: float = 1.0) -> None:
    """Wait until another process publishes `path`, as long as its partial file (`<path>.partial-<pid>`) keeps
    growing, or its archive's unpacking folder (`<path>.unpacking-<pid>`, touched while it fills) changes, or a
    tiled pack's whole-picture store (`<path>.untiled-<pid>`, and its partial file and unpacking folder) does; a
    FastloadError after `patience` seconds without a sign of it (the packer failed, or none was started: under
    torchrun a failed rank 0 ends the others anyway, a hand-made launcher does not)."""
    seen, last = None, time.monotonic()
    while not os.path.exists(path):
        stamps = []
        for partial in [
            p for tag in ("partial", "unpacking", "untiled") for p in glob.glob(f"{glob.escape(path)}.{tag}-*")
        ]:
            try:
                st = os.stat(partial)
                stamps.append((partial, st.st_size, st.st_mtime_ns))
            except OSError:  # renamed into place or removed meanwhile
                continue
        if stamps != seen:
            seen, last = stamps, time.monotonic()
        elif time.monotonic() - last > patience:
            doing = "has stopped growing" if stamps else "was not started or failed"
            named = src if isinstance(src, str) else " + ".join(src)
            raise FastloadError(f"{named}: waited {patience:.0f} s for the store {path}: its packing (rank 0) {doing}")
        time.sleep(poll)


# the classification datasets YOLOv5's classify/train.py fetches by name (`--data imagenette160`) from its release
CLASSIFY_RELEASE = "https://github.com/ultralytics/yolov5/releases/download/v1.0"
CLASSIFY_DATASETS = ("imagenette160", "imagenette320", "imagenette", "imagewoof160", "imagewoof320", "imagewoof",
                     "cifar10", "cifar100", "mnist160", "mnist")  # fmt: skip


def ensure_store(
    src: str,
    cache: str,
    packer: bool = True,
    workers: int | None = None,
    patience: float = 600.0,
    autosplit: tuple[float, ...] | None = None,
    classes: str | None = None,
    background: float | None = None,
    dedupe: bool | str = False,
    tile: Tiling | None = None,
) -> tuple[str, dict | None]:
    """(store path, pack report or None when nothing was packed). A store is returned as it is; a YOLO folder or a
    data.yaml is packed into `<cache>/<name>-<key>.lmdb` unless that exists, copying the unchanged records of the
    cache's earlier store of it, which is then removed (`prune`). With `packer` False (other ranks) wait for the
    packing process to publish it (`wait_for_store`). This process holds each cache store it returns (`hold`).
    `autosplit`: the dataset's images split anew by these weights (fastload.pack.autosplit); `classes`: only these
    of its classes (fastload.pack.classes); `background`: the share of its train images without objects kept;
    `dedupe`: images stored twice left out (fastload.pack.thinning; "near" or "crops": near copies too,
    fastload.pack.near_dedupe); `tile`: the images cut into tiles
    (fastload.pack.tiles)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if src in CLASSIFY_DATASETS and not os.path.exists(src):  # YOLOv5's classify/train.py --data cifar10: its zip
        src = f"{os.environ.get('FASTLOAD_DATASETS_URL') or CLASSIFY_RELEASE}/{src}.zip"
    thin = {"background": background, "dedupe": dedupe or False}
    opts = PackOptions(workers=workers, autosplit=autosplit, classes=classes, tile=tile, **thin)
    several = several_archives(src)  # a dataset that comes in parts: COCO's zips
    if several or archive_kind(src):
        return _ensure_archive(several or src, cache, opts, packer, patience)
    if is_store(src) or (os.path.isfile(src) and not src.endswith((".yaml", ".yml", ".json"))):
        if CACHED.fullmatch(os.path.basename(src)) and os.path.isfile(src):
            hold(src)
        return src, None  # a store, or a file that open_store will say what is wrong with
    if not os.path.exists(src):
        raise FastloadError(f"{src}: no such store or dataset")
    if src.endswith(".json"):
        raise FastloadError(f"{src}: pack a COCO JSON first (fastload pack {src} --coco-images DIR -o STORE)")
    name = os.path.basename(os.path.normpath(src)).rsplit(".", 1)[0] or "data"
    source = find_source(src)  # listed once: for the key, then for the pack
    source = split_anew(source, autosplit) if autosplit else source  # the key covers the splits
    spec = select_classes(classes, source.names, src).spec if classes else None  # `person, 0` = `person,person`
    path = os.path.join(cache, f"{name}-{source_key(src, source, spec, background, dedupe, tile)[:12]}.lmdb")
    return _cached(src, path, source, opts, packer, patience)


def _ensure_archive(
    src: str | list[str], cache: str, opts: PackOptions, packer: bool, patience: float
) -> tuple[str, dict | None]:
    """`ensure_store` of a dataset archive (or several, packed together): its key is each archive's path, size and
    modification time (and the options), so that a run again finds its store without unpacking it."""
    key = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for archive in [src] if isinstance(src, str) else src:
        if is_url(archive):  # fetched once, as YOLOv5 fetches a download: once
            key.update(f"{archive}\0".encode())
        else:
            st = os.stat(archive)
            key.update(f"{os.path.abspath(archive)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    spec = opts.classes and re.sub(r"\s*([,=+])\s*", r"\1", opts.classes.strip())  # names unknown until unpacked
    dedupe = ["dedupe"] * bool(opts.dedupe) + [opts.dedupe] * isinstance(opts.dedupe, str)
    key.update(json.dumps([spec, opts.autosplit, opts.background, *dedupe]).encode())
    if opts.tile is not None:
        key.update(f"tile {sorted(asdict(opts.tile).items())}".encode())
    name = archive_stem(src if isinstance(src, str) else src[0])
    path = os.path.join(cache, f"{name}-{key.hexdigest()[:12]}.lmdb")
    return _cached(src, path, None, opts, packer, patience)


def _cached(
    src: str, path: str, source: Source | None, opts: PackOptions, packer: bool, patience: float
) -> tuple[str, dict | None]:
    """The cache store `path` of `src`: found, waited for (not `packer`), or packed with `opts` (from `source`, its
    listing, when given), copying the unchanged records of the cache's earlier store of it, which is then pruned."""
    if os.path.exists(path) and hold(path):
        return path, None
    if not packer:
        wait_for_store(path, src, patience)
        hold(path)
        return path, None
    cache = os.path.dirname(path)
    os.makedirs(cache, exist_ok=True)
    earlier = earlier_stores(cache, src, path, opts.tile)
    report = pack(src, path, replace(opts, reuse=earlier[0] if earlier else None), source=source)
    hold(path)
    report["pack"]["pruned"] = prune(earlier)
    return path, report


def earlier_stores(cache: str, src: str, path: str, tile: Tiling | None = None) -> list[str]:
    """The cache's other stores of the dataset `src` in this store format, newest first: packed before its files
    changed, so never asked for again. A dataset's tiled stores and its whole-image ones are apart (`val --tile` of
    a run trained on tiles reads the whole images; neither removes the other)."""
    tiling = asdict(tile) if tile is not None else None
    found = [
        other
        for other in glob.glob(os.path.join(glob.escape(cache), "*.lmdb"))
        if other != path and CACHED.fullmatch(os.path.basename(other)) and packed_from(other, src, tiling)
    ]
    return sorted(found, key=os.path.getmtime, reverse=True)


def hold(path: str) -> bool:
    """Mark the cache store `path` in use by this process until it ends (a shared flock, which `prune` respects).
    False when it was removed meanwhile (by a pack that found it unused before this process locked it)."""
    if path in _HELD:
        return True
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:  # a file system without flock: unmarked (and `prune` removes nothing there)
        pass
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return False
    _HELD[path] = fd
    return True


def release(path: str) -> None:
    """This process no longer uses the cache store `path` (a later pack of its dataset may remove it)."""
    fd = _HELD.pop(path, None)
    if fd is not None:
        os.close(fd)


def prune(stores: list[str]) -> list[str]:
    """Remove each of these cache stores that no process holds; returns those removed. One in use stays, for the
    next pack of its dataset to remove."""
    removed = []
    for path in stores:  # (one this process has open stays mapped: its disk space is freed when the process ends)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.remove(path)
            removed.append(path)
        except OSError:  # a process holds it (a run still training on it), or the file system cannot tell
            pass
        finally:
            os.close(fd)
    return removed


def run_source(data: str, dataset: str, say) -> str:
    """What to give `ensure_store` for a run (its checkpoint's config): its store `data` while that exists; when a
    later pack of its changed dataset removed it, the dataset as it is now (say() tells)."""
    if not dataset or "://" in data or os.path.exists(data):
        return data
    say(f"{data}: gone (its dataset changed since, and a later pack replaced it): using {dataset} as it is now")
    return dataset


def packed_line(path: str, report: dict) -> str:
    """What `ensure_store` packed, in one line: the images, the records copied from the earlier store, what the
    cache let go, how many labels look wrong (fastload.label_check)."""
    count = sum(s["count"] for s in report["splits"].values())
    reused = report["pack"].get("reused", {}).get("records", 0)
    copied = f" ({reused} unchanged, copied from the earlier store)" if reused else ""
    pruned = report["pack"].get("pruned", [])
    gone = f"; removed {len(pruned)} earlier store{'s' * (len(pruned) > 1)} of it" if pruned else ""
    found = check_labels(path, quiet=True, most=0)  # as `pack` warns: from the stored boxes, in milliseconds
    wrong = sum(found[kind] for kind in KINDS)
    labels = f"; {wrong} labels look wrong (fastload verify {path} --labels)" if wrong else ""
    return (
        f"packed {path}: {count} images{copied}, {len(report['skipped'])} skipped (fastload info {path}){gone}{labels}"
    )
