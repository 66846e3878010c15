"""Write a COCO instances JSON for one split of a YOLO-layout dataset (pixel xywh boxes; each object's polygon as
its segmentation: a segment row's points, a box row's corners).

    python tools/yolo_to_coco.py runs/demo/data val runs/demo/instances_val.json

Used to test COCO packing and to cross-check mAP with pycocotools on the same data.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from PIL import Image


def yolo_to_coco(
    dataset: str,
    split: str,
    names: list[str],
    category_ids: list[int] | None = None,
    extra_images: list[dict] = (),
    crowd_on_first: bool = False,
) -> dict:
    """The COCO dict; class k becomes category `category_ids[k]` (default k + 1)."""
    cat_ids = category_ids or [k + 1 for k in range(len(names))]
    img_dir = os.path.join(dataset, "images", split)
    images, anns = [], []
    for k, name in enumerate(sorted(os.listdir(img_dir))):
        w, h = Image.open(os.path.join(img_dir, name)).size
        image_id = 100 + k
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        label = os.path.join(dataset, "labels", split, os.path.splitext(name)[0] + ".txt")
        lines = open(label).read().splitlines() if os.path.isfile(label) else []
        for values in (np.array(line.split(), np.float64) for line in lines if line.strip()):
            c, points = int(values[0]), values[1:].reshape(-1, 2) * (w, h)
            if len(points) == 2:  # a box: cx, cy, w, h -> its corners
                (cx, cy), (bw, bh) = points
                points = np.array([[cx - bw / 2, cy - bh / 2], [cx + bw / 2, cy - bh / 2], [cx + bw / 2, cy + bh / 2],
                                   [cx - bw / 2, cy + bh / 2]])  # fmt: skip
            (x1, y1), (x2, y2) = points.min(0), points.max(0)
            box = [float(v) for v in (x1, y1, x2 - x1, y2 - y1)]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[c],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "segmentation": [points.reshape(-1).tolist()],
                    "iscrowd": 0,
                }
            )
    if crowd_on_first and images:
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": images[0]["id"],
                "category_id": cat_ids[0],
                "bbox": [1.0, 1.0, 20.0, 20.0],
                "area": 400.0,
                "iscrowd": 1,
            }
        )
    cats = [{"id": i, "name": n} for i, n in zip(cat_ids, names, strict=True)]
    return {"images": images + list(extra_images), "annotations": anns, "categories": cats}


if __name__ == "__main__":
    import yaml

    dataset, split, out = sys.argv[1:4]
    with open(os.path.join(dataset, "data.yaml")) as f:
        names = yaml.safe_load(f)["names"]
    with open(out, "w") as f:
        json.dump(yolo_to_coco(dataset, split, names), f)
