"""`fastload pack SRC --dry-run`: how fastload reads a dataset (its kind, names, splits, and how many of each
split's images have labels) without decoding an image or writing a store: a look before packing 100k images from a
layout fastload recognised on its own. With `--tile`, how many tiles each split's images make (from their headers)."""

from __future__ import annotations

import os
from collections.abc import Callable

from PIL import Image
from tqdm import tqdm

from fastload.pack.archive import archive_kind, archive_kinds, unpacked
from fastload.pack.sources import Source
from fastload.pack.tiles import Tiling

SHOWN = 3  # paths listed per split
DATASET_KINDS = {
    "yolo": "a YOLO folder",
    "data.yaml": "a YOLO dataset by its data.yaml",
    "darknet": "a Darknet folder",
    "coco": "COCO JSON labels",
    "voc": "a Pascal VOC dataset",
    "labelme": "a LabelMe folder",
}


def dry_run(src: str | list[str], listed: Callable[[str], Source], out: str, tiling: Tiling | None = None,
            max_side: int | None = None, progress: bool = False) -> dict:  # fmt: skip
    """describe() of the dataset `src`, listed by `listed(path)`; an archive (or several) is unpacked beside `out`
    to look, then removed."""
    archives = [src] if isinstance(src, str) else list(src)
    if len(archives) == 1 and archive_kind(archives[0]) is None:
        return describe(listed(archives[0]), archives[0], tiling, max_side, progress)
    archive_kinds(archives)
    with unpacked(archives, out, sizes=tiling is not None) as got:  # images not unpacked: sizes from their headers
        source = listed(got.root)
        got.adopt(source)
        return describe(source, " + ".join(archives), tiling, max_side, progress, got.sizes)


def describe(source: Source, src: str, tiling: Tiling | None = None, max_side: int | None = None,
             progress: bool = False, sizes: dict | None = None) -> dict:  # fmt: skip
    """What `source` (the listing of `src`) holds, per split: images, those with labels (a label file that exists,
    or a COCO JSON's annotations), and the first paths as the store would keep them; with `tiling`, the tiles
    (tile_counts; `sizes`: the images' sizes by path, for those not on disk)."""
    splits = {}
    for split, paths in source.split_images.items():
        if source.coco is not None:
            labelled = sum(len(source.coco[p][0]) > 0 for p in paths)
        else:
            labelled = sum(os.path.isfile(source.label_of(p)) for p in paths)
        splits[split] = {"images": len(paths), "labelled": labelled, "first": [source.rel(p) for p in paths[:SHOWN]]}
        if tiling is not None:
            splits[split] |= tile_counts(paths, tiling, max_side, f"tiles {split}" if progress else None, sizes)
    return {
        "src": src,
        "kind": source.kind,
        "names": source.names,
        "splits": splits,
        "skipped": source.skipped,
        "label_files": [os.path.relpath(p, source.root) for p in source.label_files],
    }


def tile_counts(paths: list[str], tiling: Tiling, max_side: int | None = None, progress: str | None = None,
                sizes: dict | None = None) -> dict:  # fmt: skip
    """How `pack --tile` would cut the images at `paths`, from their headers alone (after --max-side's shrink; an
    archive's images not unpacked by their `sizes`, (w, h) or None as unpacked() read them):
    `tiles` (the records they make, before --background thins the empty ones; with `whole`, each cut image's
    too), `cut` (images larger than a tile) and `unreadable` (no image header: pack skips them)."""
    tiles = cut = unreadable = 0
    for path in tqdm(paths, desc=progress, unit="img", disable=None if progress else True):  # None: on a terminal
        try:
            if sizes is not None and path in sizes:
                w, h = sizes[path] or (0, 0)
            else:
                with Image.open(path) as im:
                    w, h = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            w = h = 0
        if not w:
            unreadable += 1
            continue
        if max_side and max(w, h) > max_side:
            scale = max_side / max(w, h)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
        n = len(tiling.windows(h, w))  # (an EXIF turn swaps rows and columns: the same count)
        tiles += n + (tiling.whole and n > 1)
        cut += n > 1
    return {"tiles": tiles, "cut": cut, "unreadable": unreadable}


def report_lines(result: dict) -> list[str]:
    """dry_run()'s result as the lines `pack --dry-run` prints."""
    names = result["names"]
    shown = "none given (class ids as found)" if names is None else f"{len(names)}: {', '.join(names[:12])}"
    kind = DATASET_KINDS.get(result["kind"], result["kind"])
    lines = [f"{result['src']}: {kind}; names {shown}{' ...' * (len(names or ()) > 12)}"]
    for name, s in result["splits"].items():
        lines.append(f"  {name}: {s['images']} images, {s['labelled']} with labels ({', '.join(s['first'])}"
                     f"{', ...' * (s['images'] > len(s['first']))})")  # fmt: skip
        if "tiles" in s:
            unreadable = f"; {s['unreadable']} without a readable image header" if s["unreadable"] else ""
            lines.append(f"    --tile: {s['tiles']} tiles ({s['cut']} of the {s['images']} images larger than a "
                         f"tile, cut; the rest kept){unreadable}")  # fmt: skip
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in result["skipped"][:20]]
    lines.append("  nothing written (--dry-run)")
    return lines
