"""`--dedupe near` and `--dedupe crops`: after a pack (which left out byte-for-byte copies as it went), the pictures
`verify --duplicates` groups (re-encoded, resized, mirrored; with crops, cropped copies too) are kept once. In each
group the first in pack's order stays (the splits other than train first, then record order: a val picture's train
copy goes, as with `--dedupe`), the others go, and the store is rewritten without them: records copied as they
are, their stamps kept for the next pack's reuse."""

from __future__ import annotations

from fastload.duplicates import find_duplicates
from fastload.pack.thinning import LISTED, Thinning
from fastload.store import borrowed, open_store, open_writer, read_meta

LEVELS = ("near", "crops")  # --dedupe's levels that compare pictures (exact: their bytes)


def drop_near_copies(path: str, level: str, workers: int = 1, quiet: bool = False) -> dict:
    """Leave the near copies (`level` "near", or "crops" for cropped ones too) out of the store at `path`; returns
    its metadata, with each split's `duplicates_dropped` and the `duplicates` listed (`kind` near, mirrored or
    cropped) counting them."""
    fmt, meta = read_meta(path)
    splits = list(meta["splits"])
    first = Thinning(None, True).order(splits)  # pack's order with --dedupe: train last
    found = find_duplicates(path, workers=workers, quiet=quiet, crops=level == "crops", most=None)
    drops: dict[str, dict[int, dict]] = {split: {} for split in splits}
    for group in found["listed"]:
        keep, *others = sorted(group["images"], key=lambda m: (first.index(m["split"]), m["index"]))
        for m in others:
            same_as = f"{keep['split']}/{keep['path']}"
            drops[m["split"]][m["index"]] = {"path": f"{m['split']}/{m['path']}", "same_as": same_as,
                                             "kind": group["kind"]}  # fmt: skip
    if not any(drops.values()):
        return meta
    with borrowed(path):
        writer = open_writer(path, fmt, size_hint=sum(info["bytes"] for info in meta["splits"].values()))
        try:
            for split in splits:
                store = open_store(path, split)
                stamps = store.stamps()
                writer.begin_split(split)
                for i in range(len(store)):
                    if i not in drops[split]:
                        writer.add(store.get(i), None if stamps is None else tuple(stamps[i].tolist()))
                info = meta["splits"][split]
                dropped = info.get("duplicates_dropped", 0) + len(drops[split])
                meta["splits"][split] = {**info, **writer.end_split(), "duplicates_dropped": dropped}
            listed = [d for split in first for d in drops[split].values()]
            meta["duplicates"] = (meta.get("duplicates", []) + listed)[:LISTED]
            writer.finish(meta)
        except BaseException:
            writer.abort()
            raise
    return meta
