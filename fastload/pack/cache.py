"""A dataset given where a store is expected (`fastload train --data dataset/` or `data.yaml`): packed once into
an LMDB store under a cache folder, named by a key of its files' names, sizes and modification times, and reused
while they are unchanged. Many processes (torchrun ranks) may ask at once: one packs, the others wait for it."""

from __future__ import annotations

import glob
import hashlib
import os
import time

from fastload.errors import FastloadError
from fastload.pack.packer import PackOptions, is_store, pack
from fastload.pack.sources import Source, find_source, img2label_path
from fastload.store.record import FORMAT_VERSION

STORES = "runs/stores"  # where `bench` and `val` pack a dataset; `train` uses the stores/ beside its --project


def source_key(src: str, source: Source) -> str:
    """sha256 over the store format and the dataset's listing (`find_source(src)`): per split, per image (and label
    file if there is one) its path, size and modification time. Any added, removed, replaced or touched file changes
    it, and so does a new store format (a store packed by an older fastload lacks what the new one keeps)."""
    key = hashlib.sha256(f"{os.path.abspath(src)}\0v{FORMAT_VERSION}".encode())  # a new format: packed anew
    for split, paths in source.split_images.items():
        key.update(f"[{split}]\n".encode())
        for path in paths:
            for p in (path, img2label_path(path)):
                try:
                    st = os.stat(p)
                    key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                except OSError:
                    key.update(f"{p}\0-\n".encode())
    return key.hexdigest()


def wait_for_store(path: str, src: str, patience: float = 600.0, poll: float = 1.0) -> None:
    """Wait until another process publishes `path`, as long as its partial file (`<path>.partial-<pid>`) keeps
    growing; a FastloadError after `patience` seconds without a sign of it (the packer failed, or none was started:
    under torchrun a failed rank 0 ends the others anyway, a hand-made launcher does not)."""
    seen, last = None, time.monotonic()
    while not os.path.exists(path):
        stamps = []
        for partial in glob.glob(glob.escape(path) + ".partial-*"):
            try:
                st = os.stat(partial)
                stamps.append((partial, st.st_size, st.st_mtime_ns))
            except OSError:  # renamed into place or removed meanwhile
                continue
        if stamps != seen:
            seen, last = stamps, time.monotonic()
        elif time.monotonic() - last > patience:
            doing = "has stopped growing" if stamps else "was not started or failed"
            raise FastloadError(f"{src}: waited {patience:.0f} s for the store {path}: its packing (rank 0) {doing}")
        time.sleep(poll)


def ensure_store(
    src: str, cache: str, packer: bool = True, workers: int | None = None, patience: float = 600.0
) -> tuple[str, dict | None]:
    """(store path, pack report or None when nothing was packed). A store is returned as it is; a YOLO folder or a
    data.yaml is packed into `<cache>/<name>-<key>.lmdb` unless that exists. With `packer` False (other ranks) wait
    for the packing process to publish it (`wait_for_store`)."""
    if is_store(src) or (os.path.isfile(src) and not src.endswith((".yaml", ".yml", ".json"))):
        return src, None  # a store, or a file that open_store will say what is wrong with
    if not os.path.exists(src):
        raise FastloadError(f"{src}: no such store or dataset")
    if src.endswith(".json"):
        raise FastloadError(f"{src}: pack a COCO JSON first (fastload pack {src} --coco-images DIR -o STORE)")
    name = os.path.basename(os.path.normpath(src)).rsplit(".", 1)[0] or "data"
    source = find_source(src)  # listed once: for the key, then for the pack
    path = os.path.join(cache, f"{name}-{source_key(src, source)[:12]}.lmdb")
    if os.path.exists(path):
        return path, None
    if not packer:
        wait_for_store(path, src, patience)
        return path, None
    os.makedirs(cache, exist_ok=True)
    report = pack(src, path, PackOptions(workers=workers or min(8, os.cpu_count() or 1)), source=source)
    return path, report
