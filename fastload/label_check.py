"""`fastload verify --labels`: labels that look wrong, found from the stored boxes alone (no image is decoded).

- `conflicting`: two boxes of different classes over one object (IoU above `iou`, 0.9): one object labelled as two
  things, which teaches the model both.
- `overlapping`: two boxes of one class over one object (IoU above `iou`): the object labelled twice. `pack` drops
  only rows that are the same to the last digit, as YOLOv5's label check does; a second click is not.
- `tiny`: boxes under 2 pixels a side once the image is shrunk to the training size (`imgsz`, 640): YOLOv5's
  augmentation drops such boxes (box_candidates' wh_thr), so they never train.
- `thin`: boxes more than 100 times as long as wide, which YOLOv5's augmentation drops too (its ar_thr).

Each is a warning: `verify` still exits 0 for them."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from fastload.store import open_store, read_meta

LISTED = 1000  # findings the report lists; the counts cover all
MIN_PX, MAX_RATIO = 2.0, 100.0  # YOLOv5's box_candidates: wh_thr, ar_thr
KINDS = ("conflicting", "overlapping", "tiny", "thin")


def image_findings(rows: np.ndarray, size, iou: float = 0.9, imgsz: int = 640) -> list[dict]:
    """One image's findings from its rows [n, 5] (cls, cx, cy, w, h normalised) and its size (h, w): each
    {kind, boxes: [row indices], classes: [class ids], and iou for a pair}."""
    rows = np.asarray(rows, np.float64)
    found = split_findings(rows, np.array([len(rows)]), np.array([size]), iou, imgsz)
    every = sum(len(v) for v in found.values())  # pairs can outnumber the rows: list them all
    return [{k: v for k, v in f.items() if k != "index"} for f in _listed(found, rows, every)]


def split_findings(
    rows: np.ndarray, counts: np.ndarray, sizes: np.ndarray, iou: float = 0.9, imgsz: int = 640
) -> dict[str, np.ndarray]:
    """The findings of a whole split at once (numpy over every box, not a loop over records), from its box rows
    [M, 5] in record order, each record's count of them [N] and its size (h, w) [N, 2]: per kind an int64 array
    [k, 3] (box a, box b or -1, iou x 1000 or -1), boxes as row numbers into `rows`."""
    rows = np.asarray(rows, np.float64).reshape(-1, 5)
    record = np.repeat(np.arange(len(counts)), counts)
    hw = np.asarray(sizes, np.float64).reshape(-1, 2)[record]
    wh = rows[:, 3:5] * hw[:, ::-1]
    single = {
        "tiny": np.flatnonzero((wh * imgsz / hw.max(1, keepdims=True) < MIN_PX).any(1)),
        "thin": np.flatnonzero(np.maximum(wh[:, 0] / np.maximum(wh[:, 1], 1e-9),
                                          wh[:, 1] / np.maximum(wh[:, 0], 1e-9)) > MAX_RATIO),
    }  # fmt: skip
    xyxy = np.concatenate([rows[:, 1:3] - rows[:, 3:5] / 2, rows[:, 1:3] + rows[:, 3:5] / 2], 1) * np.tile(
        hw[:, ::-1], 2
    )
    a, b, over = _overlaps(xyxy, np.asarray(counts), iou)
    same = rows[a, 0] == rows[b, 0]
    pair = np.stack([a, b, np.round(over * 1000).astype(np.int64)], 1)
    out = {"conflicting": pair[~same], "overlapping": pair[same]}
    for kind, boxes in single.items():
        out[kind] = np.stack([boxes, np.full(len(boxes), -1), np.full(len(boxes), -1)], 1)
    return out


def _overlaps(xyxy: np.ndarray, counts: np.ndarray, iou: float, limit: int = 1 << 22):
    """Row numbers a < b of boxes of one record whose IoU is above `iou`, and that IoU: the pairs of each record
    built for all records of one box count at once (`limit` pairs at a time)."""
    offsets = np.r_[0, np.cumsum(counts)][:-1]
    found = [[np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]]  # a, b, IoU: parts joined once
    for n in np.unique(counts[counts > 1]):
        first, second = np.triu_indices(n, 1)
        starts = offsets[counts == n]
        step = max(1, limit // len(first))
        for c in range(0, len(starts), step):
            a = (starts[c : c + step, None] + first).ravel()
            b = (starts[c : c + step, None] + second).ravel()
            lo, hi = np.maximum(xyxy[a, :2], xyxy[b, :2]), np.minimum(xyxy[a, 2:], xyxy[b, 2:])
            inter = np.clip(hi - lo, 0, None).prod(1)
            union = (xyxy[a, 2:] - xyxy[a, :2]).prod(1) + (xyxy[b, 2:] - xyxy[b, :2]).prod(1) - inter
            over = inter / np.maximum(union, 1e-12)
            keep = over > iou
            for part, v in zip(found, (a[keep], b[keep], over[keep]), strict=True):
                part.append(v)
    a, b, over = (np.concatenate(part) for part in found)
    order = np.argsort(a, kind="stable")
    return a[order], b[order], over[order]


def check_labels(path: str, iou: float = 0.9, imgsz: int = 640, quiet: bool = False, most: int = LISTED) -> dict:
    """The findings of every record of the store at `path`: per kind its count (and per split), and the first `most`
    findings with their split, record and path, worst kinds first."""
    splits = list(read_meta(path)[1]["splits"])
    counts = {kind: 0 for kind in KINDS}
    per_split, listed = {}, []
    for split in tqdm(splits, desc="labels", unit="split", disable=quiet or None, leave=False):
        store = open_store(path, split)
        rows = store.boxes
        found = split_findings(rows, store.box_counts, store.sizes, iou, imgsz)
        per_split[split] = {kind: len(found[kind]) for kind in KINDS}
        for kind in KINDS:
            counts[kind] += per_split[split][kind]
        for f in _listed(found, rows, most - len(listed), np.r_[0, np.cumsum(store.box_counts)]):
            listed.append({"split": split, "path": store.path_of(f["index"]), **f})
    listed.sort(key=lambda f: KINDS.index(f["kind"]))
    return {**counts, "splits": per_split, "iou": iou, "imgsz": imgsz, "listed": listed}


def _listed(found: dict, rows: np.ndarray, most: int, offsets: np.ndarray | None = None) -> list[dict]:
    """Up to `most` findings as dicts {index (the record), kind, boxes (within the record), classes, iou for a pair},
    worst kinds first."""
    offsets = np.array([0, len(rows)]) if offsets is None else offsets
    out = []
    for kind in KINDS:
        for a, b, iou in found[kind][: max(most - len(out), 0)].tolist():
            index = int(np.searchsorted(offsets, a, "right") - 1)
            boxes = [a] + [b] * (b >= 0)
            out.append(
                {
                    "index": index,
                    "kind": kind,
                    "boxes": [int(x - offsets[index]) for x in boxes],
                    "classes": [int(rows[x, 0]) for x in boxes],
                    **({"iou": iou / 1000} if b >= 0 else {}),
                }
            )
    return out


def counts_text(found: dict) -> str:
    """check_labels' counts in words."""
    return (f"{found['conflicting']} objects boxed twice with two classes (IoU > {found['iou']}), "
            f"{found['overlapping']} boxed twice with one class, {found['tiny']} boxes under {MIN_PX:g} px at "
            f"{found['imgsz']}, {found['thin']} over {MAX_RATIO:g}:1")  # fmt: skip


def report_lines(found: dict, names: list[str]) -> list[str]:
    """check_labels' result as `verify` prints it: the counts, then up to 20 findings."""

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    lines = [f"  labels: {counts_text(found)}"]
    for f in found["listed"][:20]:
        boxes = " and ".join(str(b) for b in f["boxes"])
        classes = ", ".join(name(c) for c in f["classes"])
        extra = f" IoU {f['iou']}" if "iou" in f else ""
        lines.append(f"  warning: {f['kind']} {f['split']}/{f['path']}: box{'es' * (len(f['boxes']) > 1)} {boxes} "
                     f"({classes}){extra}")  # fmt: skip
    return lines
