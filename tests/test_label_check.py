"""`fastload verify --labels`: one object boxed twice (with two classes, or with one), and boxes too small or too
thin to train at the training size, found from the stored boxes alone; warnings, not failures. `pack` counts them.
The whole-split numpy check finds what a check of each image's rows finds."""

from __future__ import annotations

import numpy as np
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.label_check import KINDS, image_findings, split_findings
from fastload.pack.cache import ensure_store, packed_line


def test_each_kind_of_finding_on_one_images_rows():
    rows = np.array([
        [0, 0.30, 0.30, 0.20, 0.20],
        [1, 0.30, 0.30, 0.20, 0.205],  # over row 0, another class: conflicting
        [2, 0.70, 0.70, 0.20, 0.20],
        [2, 0.70, 0.701, 0.20, 0.20],  # over row 2, its class: overlapping
        [0, 0.50, 0.90, 0.002, 0.10],  # 2 px wide in 1000: 1.3 px at 640: tiny
        [1, 0.50, 0.95, 0.80, 0.005],  # 800 x 5 px: 160:1, thin
        [0, 0.10, 0.70, 0.10, 0.10],  # fine
    ])  # fmt: skip
    got = image_findings(rows, (1000, 1000))
    kinds = sorted((f["kind"], tuple(f["boxes"])) for f in got)
    assert kinds == [("conflicting", (0, 1)), ("overlapping", (2, 3)), ("thin", (5,)), ("tiny", (4,))]
    assert image_findings(rows, (1000, 1000), imgsz=2000) != got  # at 2000 the 2 px box is 4 px: not tiny
    assert not [f for f in image_findings(rows, (1000, 1000), imgsz=2000) if f["kind"] == "tiny"]


def test_verify_labels_lists_what_looks_wrong_and_still_exits_0(tmp_path):
    root = tmp_path / "d"
    labels = {
        "twice.jpg": "0 0.3 0.3 0.2 0.2\n1 0.3 0.3 0.2 0.21\n",  # one object, two classes
        "clicked.jpg": "2 0.5 0.5 0.4 0.4\n2 0.5 0.505 0.4 0.4\n",  # one object boxed twice
        "speck.jpg": "1 0.5 0.5 0.002 0.004\n",  # a box 1.3 x 1.9 px at 640 (the image is 320 x 240)
        "fine.jpg": "0 0.3 0.3 0.2 0.2\n1 0.7 0.7 0.2 0.2\n",
    }
    for name, text in labels.items():
        write(str(root / "images" / "val" / name), jpeg_bytes(320, 240))
        write(str(root / "labels" / "val" / name.replace(".jpg", ".txt")), text)
    write(str(root / "data.yaml"), "path: .\ntrain: images/val\nval: images/val\nnames: ['a', 'b', 'c']\n")
    store = str(tmp_path / "s.lmdb")
    packed = cli("pack", str(root), "-o", store, "--json")  # pack counts them too (at 640), and warns in one line
    assert packed["label_warnings"] == {"conflicting": 2, "overlapping": 2, "tiny": 2, "thin": 0}
    text = cli_process("pack", str(root), "-o", str(tmp_path / "t.lmdb"))
    assert "warning: labels that look wrong: 2 objects boxed twice with two classes" in text.stderr, text.stderr
    assert "(`fastload verify " in text.stderr and len(text.stderr.splitlines()) <= 3
    cached, report = ensure_store(str(root), str(tmp_path / "stores"))  # what train --data says as it packs
    assert f"; 6 labels look wrong (fastload verify {cached} --labels)" in packed_line(cached, report)
    got = cli("verify", store, "--labels", "--json")
    found = got["labels"]
    assert (found["conflicting"], found["overlapping"], found["tiny"], found["thin"]) == (2, 2, 2, 0)  # 2 splits
    assert found["splits"]["val"] == {"conflicting": 1, "overlapping": 1, "tiny": 1, "thin": 0}
    where = {(f["split"], f["kind"]): f for f in found["listed"]}
    assert where["val", "conflicting"]["path"] == "images/val/twice.jpg" and where["val", "conflicting"]["iou"] > 0.9
    assert where["val", "overlapping"]["path"] == "images/val/clicked.jpg"
    assert where["val", "tiny"]["path"] == "images/val/speck.jpg" and got["ok"]
    text = cli_process("verify", store, "--labels")
    assert text.returncode == 0 and "warning: conflicting train/images/val/twice.jpg: boxes 0 and 1 (a, b)" in (
        text.stdout + text.stderr
    )


def one_image(rows: np.ndarray, h: int, w: int) -> dict[str, list]:
    """The findings of one image, box by box and pair by pair in plain Python (at imgsz 640, IoU 0.9)."""
    out = {kind: [] for kind in KINDS}
    xyxy = [((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h) for _, cx, cy, bw, bh in rows]
    for i, (c, _, _, bw, bh) in enumerate(rows):
        if min(bw * w, bh * h) * 640 / max(h, w) < 2:
            out["tiny"].append([i])
        if max(bw * w / max(bh * h, 1e-9), bh * h / max(bw * w, 1e-9)) > 100:
            out["thin"].append([i])
        for j in range(i + 1, len(rows)):
            (a0, a1, a2, a3), (b0, b1, b2, b3) = xyxy[i], xyxy[j]
            inter = max(min(a2, b2) - max(a0, b0), 0) * max(min(a3, b3) - max(a1, b1), 0)
            union = (a2 - a0) * (a3 - a1) + (b2 - b0) * (b3 - b1) - inter
            if inter / union > 0.9:
                out["overlapping" if c == rows[j][0] else "conflicting"].append([i, j])
    return out


def test_a_whole_split_at_once_finds_what_each_image_alone_finds():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 12, 400)
    counts[:3] = [60, 1, 2]  # a crowded image: its pairs are built apart from the others'
    rows = np.zeros((counts.sum(), 5))
    rows[:, 0] = rng.integers(0, 3, len(rows))
    rows[:, 1:3], rows[:, 3:5] = rng.random((len(rows), 2)), rng.random((len(rows), 2)) * 0.3 + 5e-4
    again = np.flatnonzero(rng.random(len(rows)) < 0.2)[1:]
    rows[again, 1:] = rows[again - 1, 1:] + rng.normal(0, 0.002, (len(again), 4))  # boxed twice, some across images
    rows[::97, 4] = rows[::97, 3] / 150  # and some thin
    sizes = rng.integers(100, 2000, (400, 2))
    offsets = np.r_[0, np.cumsum(counts)]
    whole = split_findings(rows, counts, sizes)
    each = {kind: [] for kind in KINDS}
    for i in range(400):
        for kind, found in one_image(rows[offsets[i] : offsets[i + 1]].tolist(), *sizes[i]).items():
            each[kind] += [[offsets[i] + b for b in boxes] for boxes in found]
    for kind in KINDS:
        assert sorted(whole[kind][:, : 1 + (kind in ("conflicting", "overlapping"))].tolist()) == sorted(each[kind])
        assert len(each[kind]) > 3, kind


def test_one_images_pairs_may_outnumber_its_boxes():
    rows = np.array([[0, 0.5, 0.5, 0.2, 0.2]] * 3 + [[1, 0.5, 0.5, 0.2, 0.2]])  # 4 boxes on one object: 6 pairs
    kinds = [f["kind"] for f in image_findings(rows, (100, 100))]
    assert sorted(kinds) == ["conflicting"] * 3 + ["overlapping"] * 3
