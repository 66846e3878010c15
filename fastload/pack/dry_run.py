"""`fastload pack SRC --dry-run`: how fastload reads a dataset (its kind, names, splits, and how many of each
split's images have labels) without reading an image or writing a store: a look before packing 100k images from a
layout fastload recognised on its own."""

from __future__ import annotations

import os
from collections.abc import Callable

from fastload.pack.archive import archive_kind, archive_kinds, unpacked
from fastload.pack.sources import Source

SHOWN = 3  # paths listed per split


def dry_run(src: str | list[str], listed: Callable[[str], Source], out: str) -> dict:
    """describe() of the dataset `src`, listed by `listed(path)`; an archive (or several) is unpacked beside `out`
    to look, then removed."""
    archives = [src] if isinstance(src, str) else list(src)
    if len(archives) == 1 and archive_kind(archives[0]) is None:
        return describe(listed(archives[0]), archives[0])
    archive_kinds(archives)
    with unpacked(archives, out) as got:
        source = listed(got.root)
        got.adopt(source)
        return describe(source, " + ".join(archives))


def describe(source: Source, src: str) -> dict:
    """What `source` (the listing of `src`) holds, per split: images, those with labels (a label file that exists,
    or a COCO JSON's annotations), and the first paths as the store would keep them."""
    splits = {}
    for split, paths in source.split_images.items():
        if source.coco is not None:
            labelled = sum(len(source.coco[p][0]) > 0 for p in paths)
        else:
            labelled = sum(os.path.isfile(source.label_of(p)) for p in paths)
        splits[split] = {"images": len(paths), "labelled": labelled, "first": [source.rel(p) for p in paths[:SHOWN]]}
    return {
        "src": src,
        "kind": source.kind,
        "names": source.names,
        "splits": splits,
        "skipped": source.skipped,
        "label_files": [os.path.relpath(p, source.root) for p in source.label_files],
    }
