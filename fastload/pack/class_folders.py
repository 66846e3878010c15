"""A classification dataset: ImageNet's and YOLOv5's classify layout, `<split>/<class>/**/*.jpg` (torchvision's
ImageFolder per split: the classes are the train split's folders, sorted). Each image is packed with one row, its
class over the whole picture: (class, 0.5, 0.5, 1, 1); the store's metadata says `task: classify`."""

from __future__ import annotations

import os

import numpy as np

from fastload.errors import FastloadError
from fastload.pack.images import IMAGE_SUFFIXES
from fastload.pack.sources import SPLIT_FOLDERS, Source, list_images

TASK = "classify"
NOT_CLASSES = ("images", "labels", "annotations", "JPEGImages", "Annotations")  # other layouts' folders


def _folders(path: str) -> list[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))


def _labelled(folder: str, look: int = 20) -> bool:
    """Whether the first images of `folder` have YOLO .txt labels beside them (a detection dataset in subfolders)."""
    names = sorted(os.listdir(folder))[:look]
    stems = {os.path.splitext(n)[0] for n in names if n.lower().endswith(".txt")}
    return any(os.path.splitext(n)[0] in stems for n in names if n.lower().endswith(IMAGE_SUFFIXES))


def class_folders(root: str) -> Source | None:
    """The classification dataset at `root` (a `train/` split of class folders holding images, and the other
    splits alike), or None when `root` is not one. Splits list their images sorted; an image directly in a split
    folder (no class) is skipped with its reason, and so is a class folder of val or test that train lacks."""
    splits = {d: SPLIT_FOLDERS[d.lower()] for d in _folders(root) if d.lower() in SPLIT_FOLDERS}
    train = next((d for d, s in splits.items() if s == "train"), None)
    if train is None:
        return None
    classes = _folders(os.path.join(root, train))
    if not classes or any(c in NOT_CLASSES for c in classes):
        return None
    first = os.path.join(root, train, classes[0])
    if not any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(first)) or _labelled(first):
        return None
    split_images: dict[str, list[str]] = {}
    skipped = []
    for folder, split in splits.items():
        path = os.path.join(root, folder)
        images = []
        for entry in sorted(os.listdir(path)):
            full = os.path.join(path, entry)
            if os.path.isdir(full) and entry in classes:
                images += list_images(full)
            elif os.path.isdir(full) and list_images(full):
                skipped.append({"path": os.path.join(folder, entry), "reason": "a class folder train does not have"})
            elif entry.lower().endswith(IMAGE_SUFFIXES):
                skipped.append({"path": os.path.join(folder, entry), "reason": "not in a class folder"})
        split_images.setdefault(split, []).extend(images)
    return Source(TASK, root, classes, split_images, skipped)


def class_name(rel: str) -> str:
    """The class folder of an image's path in the store (`train/cat/1.jpg` -> cat)."""
    return rel.replace(os.sep, "/").split("/")[1]


def class_row(rel: str, class_ids: dict[str, int]) -> np.ndarray:
    """The one label row of an image of a class folder: its class over the whole picture."""
    return np.array([[class_ids[class_name(rel)], 0.5, 0.5, 1.0, 1.0]])


def refuse_for_classes(where: str, opts) -> None:
    """A FastloadError for the pack options that make no sense for a classification dataset (PackOptions `opts`)."""
    picks = ((opts.classes, "--classes picks objects' classes"), (opts.background, "--background thins images "
             "without objects"), (opts.tile, "--tile cuts pictures into tiles with their objects"))  # fmt: skip
    for given, what in picks:
        if given is not None:
            raise FastloadError(f"{where}: a classification dataset (class folders): {what}; pack the class "
                                "folders as they are")  # fmt: skip
