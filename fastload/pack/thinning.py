"""What `--background` and `--dedupe` leave out of a pack, record by record as they come: images without objects
beyond the chosen share of the train split, and images stored twice byte for byte."""

from __future__ import annotations

import hashlib

from fastload.pack.autosplit import place
from fastload.store.record import Record

LISTED = 1000  # duplicates the report names; the counts cover all


def keeps_background(rel: str, share: float) -> bool:
    """Whether `--background share` keeps the image without objects at `rel`: a hash of its path (not autosplit's)
    below the share, so that the same images are kept on every pack and as the dataset grows."""
    return place("background\0" + rel) < share


class Thinning:
    """`background`: the share of the train split's images without objects kept (None: all). `dedupe`: an image
    whose bytes an image already packed has is left out, so the splits other than train are packed first: a copy
    in train of a val image goes, not the val image (trained on, it would make mAP measure memory)."""

    def __init__(self, background: float | None, dedupe: bool) -> None:
        self.background = background if background is not None and background < 1 else None
        self.dedupe = dedupe
        self.seen: dict[bytes, str] = {}  # image bytes' hash -> the split/path that has them
        self.duplicates: list[dict] = []  # the first LISTED left out, and what they copy

    def order(self, splits: list[str]) -> list[str]:
        """The order to pack `splits` in: train last when deduplicating."""
        return [s for s in splits if s != "train"] + [s for s in splits if s == "train"] if self.dedupe else splits

    def drop(self, split: str, rec: Record) -> str | None:
        """Why `rec` (of `split`) is left out ("background" or "duplicate"), or None to pack it."""
        if self.background is not None and split == "train" and not len(rec.boxes):
            if not keeps_background(rec.path, self.background):
                return "background"
        if self.dedupe:
            key = hashlib.blake2b(rec.image, digest_size=16).digest()
            first = self.seen.setdefault(key, f"{split}/{rec.path}")
            if first != f"{split}/{rec.path}":
                if len(self.duplicates) < LISTED:
                    self.duplicates.append({"path": f"{split}/{rec.path}", "same_as": first, "kind": "exact"})
                return "duplicate"
        return None

    def counted(self, split: str, dropped: dict[str, int]) -> dict:
        """The split's counts of what was left out, for its report."""
        out = {}
        if self.background is not None and split == "train":
            out["background_dropped"] = dropped.get("background", 0)
        if self.dedupe:
            out["duplicates_dropped"] = dropped.get("duplicate", 0)
        return out


def duplicate_lines(meta: dict) -> list[str]:
    """What `--dedupe` left out of each split, for pack's and merge's reports, with an example of each."""
    level = meta["pack"].get("dedupe")
    level = f" {level}" if isinstance(level, str) else ""  # near or crops
    lines = []
    for name, split in meta["splits"].items():
        if split.get("duplicates_dropped"):
            first = (f"; e.g. {d['path']} = {d['same_as']}" for d in meta.get("duplicates", [])
                     if d["path"].startswith(f"{name}/"))  # fmt: skip
            lines.append(f"  {name}: {split['duplicates_dropped']} images stored twice{' or nearly' * bool(level)} "
                         f"left out (--dedupe{level}{next(first, '')})")  # fmt: skip
    return lines
