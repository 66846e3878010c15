"""A dataset folder whose labels are COCO JSONs, one per split, packed into one store: COCO's own layout
(`annotations/instances_train2017.json` with `train2017/` or `images/train2017/`), CVAT's "COCO 1.0" export
(`annotations/instances_default.json` with `images/`), Roboflow's "COCO" export (`train/_annotations.coco.json`
beside its images, `valid/`, `test/`), and Label Studio's (`result.json` beside `images/`)."""

from __future__ import annotations

import os

from fastload.errors import FastloadError
from fastload.pack.sources import SPLIT_FOLDERS, SPLIT_KEYS, Source, coco_json

ROBOFLOW = "_annotations.coco.json"
LABEL_STUDIO = "result.json"  # its COCO export: result.json beside images/
OTHER_COCO = ("captions_", "person_keypoints_", "image_info_", "stuff_", "panoptic_")  # COCO's other JSONs


def coco_jsons(root: str) -> list[tuple[str, str | list[str], str]]:
    """(JSON, its image folder or candidates for it, its split) for each COCO JSON of the folder `root`, in split
    order; [] when it has none, or has YOLO labels (`labels/`, `<split>/labels/`), which win."""
    if os.path.isdir(os.path.join(root, "labels")):
        return []
    found = []
    for d in sorted(os.listdir(root)):
        folder = os.path.join(root, d)
        if os.path.isfile(os.path.join(folder, ROBOFLOW)) and not os.path.isdir(os.path.join(folder, "labels")):
            found.append((os.path.join(folder, ROBOFLOW), folder, SPLIT_FOLDERS.get(d.lower(), d)))
    if os.path.isfile(os.path.join(root, LABEL_STUDIO)):  # its file_names: images/<name>
        found.append((os.path.join(root, LABEL_STUDIO), _images_of(root, "result"), "train"))
    annotations = os.path.join(root, "annotations")
    if os.path.isdir(annotations):
        for f in sorted(os.listdir(annotations)):
            if f.lower().endswith(".json") and not f.lower().startswith(OTHER_COCO):
                stem = f[: -len(".json")]
                token = stem[len("instances_") :] if stem.lower().startswith("instances_") else stem
                found.append((os.path.join(annotations, f), _images_of(root, token), _split_of(token)))
    order = {k: i for i, k in enumerate(SPLIT_KEYS)}
    return sorted(found, key=lambda j: (order.get(j[2], len(order)), j[2], j[0]))


def _images_of(root: str, token: str) -> list[str]:
    """Where the file_names of `annotations/instances_<token>.json` may be: `<token>/`, `images/<token>/`,
    `images/`, the dataset folder itself (those that exist; coco_json takes the one holding its first image)."""
    folders = [os.path.join(root, token), os.path.join(root, "images", token), os.path.join(root, "images"), root]
    return [f for f in folders if os.path.isdir(f)]


def _split_of(token: str) -> str:
    """train2017 -> train, val2017 -> val, test-dev -> test; another name (CVAT's `default`) -> train."""
    low = token.lower()
    return next((k for k in ("val", "test", "train") if k in low), "train")


def coco_folder(root: str, jsons: list[tuple[str, str | list[str], str]]) -> Source:
    """One Source of every JSON's images and labels, each under its split; paths in the store are relative to
    `root`. A JSON that does not read is skipped (its split packed without it), listed with its reason; the
    JSONs must name the same categories."""
    names, splits, coco, skipped = None, {}, {}, []
    for path, images, split in jsons:
        try:
            part = coco_json(path, images, split)
        except FastloadError as e:
            skipped.append({"path": os.path.relpath(path, root), "reason": f"not read: {e.message}"})
            continue
        if names is not None and part.names != names:
            raise FastloadError(f"{path}: its categories ({', '.join(part.names[:8])}, ...) are not those of the "
                                f"other JSONs of {root} ({', '.join(names[:8])}, ...): pack it on its own")  # fmt: skip
        names = part.names
        splits.setdefault(split, []).extend(part.split_images[split])
        coco.update(part.coco)
        skipped += part.skipped
    root = os.path.realpath(root)  # as coco_json's image paths are
    return Source("coco", root, names, splits, skipped, coco, label_files=[j[0] for j in jsons])
