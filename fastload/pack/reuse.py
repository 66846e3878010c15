"""`pack --reuse` (and packing a dataset again into its store): the records of inputs unchanged since an earlier
store of the same dataset was packed, copied from it instead of packed again."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from fastload.pack.prepare import BY_NAME, Prepared, stamp_of, stat_of
from fastload.pack.sources import Item, Source
from fastload.store import FORMAT_VERSION, borrowed, open_store, read_meta
from fastload.store.record import EMPTY_LABEL, FIXED, MISSING_LABEL
from fastload.verify import problem_of

if TYPE_CHECKING:
    from fastload.pack.packer import PackOptions  # (the packer builds on this module)


class Reuse:
    """An earlier store of the same dataset, packed with the same options: the record of an input whose image and
    label file have the size and modification time they had then is copied from it instead of packed again (after
    its CRC32 and boxes are checked, as `verify` checks them). Each split's inputs are matched by their path."""

    def __init__(self, path: str, source: Source, opts: PackOptions) -> None:
        self.path, self.stores, self.index, self.notes = path, {}, {}, {}
        self.handle = contextlib.ExitStack()
        self.handle.enter_context(borrowed(path))  # let go of in close()
        try:
            self._open(path, source, opts)
        except BaseException:
            self.handle.close()
            raise

    def _open(self, path: str, source: Source, opts: PackOptions) -> None:
        _, meta = read_meta(path)
        pack_info = meta.get("pack", {})
        same = (pack_info.get("max_side"), pack_info.get("quality")) == (opts.max_side, opts.quality)
        if pack_info.get("classes") != opts.classes:
            return  # other classes kept, or numbered otherwise
        if source.kind in BY_NAME and meta.get("names") != source.names:
            return  # a VOC or LabelMe object's class id is its name's place in the names
        if source.coco is not None or meta.get("version") != FORMAT_VERSION or not same:
            return  # COCO labels live in one JSON; another format or re-encoding makes other records
        for split in meta["splits"]:
            store = open_store(path, split)
            stamps = store.stamps()
            if stamps is None:
                continue  # packed before stores kept their inputs' stamps
            self.stores[split] = (store, stamps)
            self.index.update((store.path_of(i), (split, i)) for i in range(len(store)))
        self.notes = {f["path"]: f["reason"] for f in meta.get("fixed", [])}

    def __len__(self) -> int:
        return len(self.index)

    def match(self, item: Item) -> tuple | None:
        """(split, index, image stat, label stat) of the earlier record of `item` when its inputs are unchanged."""
        hit = self.index.get(item.rel)
        if hit is None or item.coco is not None:
            return None
        split, i = hit
        image_stat = stat_of(item.image)
        label_stat = stat_of(item.label) if item.label else None  # not a file (was one): no match, packed again
        was = self.stores[split][1][i]
        if image_stat is None or (*image_stat, *(label_stat or (-1, -1))) != tuple(was[:4].tolist()):
            return None
        return split, i, image_stat, label_stat

    def take(self, item: Item, hit: tuple, nc: int | None) -> Prepared | None:
        """The earlier record as a Prepared, or None when it cannot be used (damaged, or a class now outside
        `nc`): the input is then packed again."""
        split, i, image_stat, label_stat = hit
        store, stamps = self.stores[split]
        try:
            rec = store.get(i)
        except Exception:  # unreadable: packed again
            return None
        if problem_of(rec) is not None:
            return None
        if nc is not None and len(rec.boxes) and rec.boxes[:, 0].max() >= nc:
            return None
        flags = int(stamps[i, 4])
        note = (self.notes.get(rec.path) or "fixed when first packed") if flags & FIXED else ""
        label = "missing" if flags & MISSING_LABEL else "empty" if flags & EMPTY_LABEL else "ok"
        stamp = stamp_of(item.rel, image_stat) + (stamp_of(item.label_rel, label_stat) if label_stat else b"")
        inputs = (*image_stat, *(label_stat or (-1, -1)))
        return Prepared(rec, note=note, label=label, stamp=stamp, inputs=inputs)

    def close(self) -> None:
        self.stores.clear()
        self.handle.close()
