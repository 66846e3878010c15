"""`fastload verify --labels`: one object boxed twice (with two classes, or with one), and boxes too small or too
thin to train at the training size, found from the stored boxes alone; warnings, not failures."""

from __future__ import annotations

import numpy as np
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.label_check import image_findings


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
    cli("pack", str(root), "-o", store)
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
