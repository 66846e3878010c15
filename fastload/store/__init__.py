"""Packed stores: `open_store(path)` reads LMDB or Zarr v3 through one `Store` interface."""

from __future__ import annotations

import contextlib
import os

from fastload.errors import FastloadError
from fastload.store import lmdb_store, zarr_store
from fastload.store.base import Store, StoreShard, shuffled_order
from fastload.store.record import FORMAT_VERSION, Record

__all__ = [
    "Record",
    "Store",
    "StoreShard",
    "borrowed",
    "detect_format",
    "disk_bytes",
    "open_store",
    "open_writer",
    "format_for",
    "read_meta",
    "shuffled_order",
]


DATASETS = (".yaml", ".yml", ".json", ".txt", ".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz")  # what read_meta calls one


def detect_format(path: str) -> str | None:
    """'lmdb' for a file, 'zarr' for a directory or URL, None if nothing is there."""
    if zarr_store.is_url(path) or os.path.isdir(path):
        return "zarr"
    if os.path.isfile(path):
        return "lmdb"
    return None


def format_for(path: str) -> str:
    """The format a new store at `path` gets unless told: Zarr for a URL or a name ending in .zarr, else LMDB."""
    return "zarr" if zarr_store.is_url(path) or path.rstrip("/").endswith(".zarr") else "lmdb"


class NoSplit(FastloadError):
    """The store has no split of that name (the message lists those it has)."""


def read_meta(path: str) -> tuple[str, dict]:
    """(format, metadata) of a complete store; FastloadError naming the path otherwise."""
    fmt = detect_format(path)
    if fmt is None:
        raise FastloadError(f"{path}: no such store")
    if (os.path.isdir(path) and not os.path.isfile(os.path.join(path, "zarr.json"))) or path.lower().endswith(DATASETS):
        kind = "folder" if os.path.isdir(path) else "dataset file"
        raise FastloadError(f"{path}: not a store but a {kind}: `fastload pack {path} -o STORE` packs a dataset "
                            "(`--dry-run`: how it reads)")  # fmt: skip
    try:
        meta = lmdb_store.read_meta(path) if fmt == "lmdb" else zarr_store.read_meta(path)
    except Exception as e:  # lmdb.Error, zarr errors, corrupt JSON: all mean "not a usable store"
        raise FastloadError(f"{path}: not a fastload store ({type(e).__name__}: {e})") from None
    if not meta or meta.get("format") != "fastload":
        raise FastloadError(f"{path}: not a complete fastload store (interrupted pack or another file)")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise FastloadError(f"{path}: store format v{meta['version']} is newer than this fastload (v{FORMAT_VERSION})")
    return fmt, meta


def open_store(path: str | os.PathLike, split: str | None = None) -> Store:
    """Open one split of a store (default: 'train' if present, else the first split)."""
    path = os.fspath(path)
    fmt, meta = read_meta(path)
    splits = list(meta["splits"])
    split = split or ("train" if "train" in splits else splits[0])
    if split not in meta["splits"]:
        raise NoSplit(f"{path}: no split {split!r} (has {', '.join(splits)})")
    cls = lmdb_store.LmdbStore if fmt == "lmdb" else zarr_store.ZarrStore
    return cls(path, split, meta)


def disk_bytes(path: str) -> int | None:
    """Bytes a store (file or directory tree) takes on disk; None for a URL or a missing path."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return None


def borrowed(path: str):
    """A context in which this process reads the store at `path` for a while (its metadata, records to copy) and
    lets go of it afterwards, unless it had it open before (lmdb_store.borrowed; Zarr keeps no handle)."""
    return lmdb_store.borrowed(path) if detect_format(path) == "lmdb" else contextlib.nullcontext()


def open_writer(path: str, fmt: str, size_hint: int = 0):
    """A writer that builds a store under a temporary name and publishes it on `finish(meta)`."""
    writer = lmdb_store.LmdbWriter if fmt == "lmdb" else zarr_store.ZarrWriter
    return writer(path, size_hint=size_hint)
