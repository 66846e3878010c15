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


def box_ious(xyxy: np.ndarray) -> np.ndarray:
    """[n, n] IoU of boxes [n, 4] with each other."""
    lo = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    hi = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(2)
    area = (xyxy[:, 2:] - xyxy[:, :2]).prod(1)
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)


def image_findings(rows: np.ndarray, size, iou: float = 0.9, imgsz: int = 640) -> list[dict]:
    """One image's findings from its rows [n, 5] (cls, cx, cy, w, h normalised) and its size (h, w): each
    {kind, boxes: [row indices], classes: [class ids], and iou for a pair}."""
    h, w = (float(v) for v in size)
    out = []
    wh = rows[:, 3:5] * (w, h)
    seen = wh * imgsz / max(h, w)
    for k in np.flatnonzero((seen < MIN_PX).any(1)):
        out.append({"kind": "tiny", "boxes": [int(k)], "classes": [int(rows[k, 0])]})
    ratio = np.maximum(wh[:, 0] / np.maximum(wh[:, 1], 1e-9), wh[:, 1] / np.maximum(wh[:, 0], 1e-9))
    for k in np.flatnonzero(ratio > MAX_RATIO):
        out.append({"kind": "thin", "boxes": [int(k)], "classes": [int(rows[k, 0])]})
    if len(rows) > 1:
        xyxy = np.concatenate([rows[:, 1:3] - rows[:, 3:5] / 2, rows[:, 1:3] + rows[:, 3:5] / 2], 1) * (w, h, w, h)
        overlap = np.triu(box_ious(xyxy), 1)
        for a, b in zip(*np.nonzero(overlap > iou), strict=True):
            kind = "overlapping" if rows[a, 0] == rows[b, 0] else "conflicting"
            out.append({"kind": kind, "boxes": [int(a), int(b)], "classes": [int(rows[a, 0]), int(rows[b, 0])],
                        "iou": round(float(overlap[a, b]), 3)})  # fmt: skip
    return out


def check_labels(path: str, iou: float = 0.9, imgsz: int = 640, quiet: bool = False) -> dict:
    """The findings of every record of the store at `path`: per kind its count (and per split), and the first
    LISTED findings with their split, record and path, worst kinds first."""
    splits = list(read_meta(path)[1]["splits"])
    counts = {kind: 0 for kind in KINDS}
    per_split, listed = {}, []
    for split in splits:
        store = open_store(path, split)
        here = {kind: 0 for kind in KINDS}
        for i in tqdm(range(len(store)), desc=f"labels {split}", unit="img", disable=quiet or None, leave=False):
            rows = store.labels(i)
            if not len(rows):
                continue
            for found in image_findings(np.asarray(rows, np.float64), store.sizes[i], iou, imgsz):
                here[found["kind"]] += 1
                if len(listed) < LISTED:
                    listed.append({"split": split, "index": i, "path": store.path_of(i), **found})
        per_split[split] = here
        for kind in KINDS:
            counts[kind] += here[kind]
    listed.sort(key=lambda f: KINDS.index(f["kind"]))
    return {**counts, "splits": per_split, "iou": iou, "imgsz": imgsz, "listed": listed}


def report_lines(found: dict, names: list[str]) -> list[str]:
    """check_labels' result as `verify` prints it: the counts, then up to 20 findings."""

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    lines = [f"  labels: {found['conflicting']} objects boxed twice with two classes (IoU > {found['iou']}), "
             f"{found['overlapping']} boxed twice with one class, {found['tiny']} boxes under {MIN_PX:g} px at "
             f"{found['imgsz']}, {found['thin']} over {MAX_RATIO:g}:1"]  # fmt: skip
    for f in found["listed"][:20]:
        boxes = " and ".join(str(b) for b in f["boxes"])
        classes = ", ".join(name(c) for c in f["classes"])
        extra = f" IoU {f['iou']}" if "iou" in f else ""
        lines.append(f"  warning: {f['kind']} {f['split']}/{f['path']}: box{'es' * (len(f['boxes']) > 1)} {boxes} "
                     f"({classes}){extra}")  # fmt: skip
    return lines
