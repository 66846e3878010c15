"""Find the images and labels of a dataset: a YOLO-layout folder, a yolov5 data.yaml, a COCO instances JSON, or a
Pascal VOC folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import yaml

from fastload.errors import FastloadError
from fastload.fetch import is_url
from fastload.pack.archive import archive_kind
from fastload.pack.download import fetch_dataset
from fastload.pack.images import IMAGE_SUFFIXES
from fastload.pack.labelme import labelme_images, labelme_names
from fastload.pack.labels import img2label_path
from fastload.pack.voc import Folder, voc_folders, voc_listing, voc_names

SPLIT_KEYS = ("train", "val", "test")
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}  # Roboflow: valid


@dataclass(slots=True)
class Item:
    """One image to pack: where it is, the path the store keeps, and where its labels come from."""

    image: str
    rel: str
    label: str | None = None  # YOLO .txt or VOC .xml (may not exist: an image without objects)
    coco: tuple | None = None  # (rows cls,x,y,w,h in pixels, (W, H), polygons in pixels or None)
    label_rel: str | None = None  # the label file's path as the report names it
    data: bytes | None = None  # the image's bytes, when they come with it (a compressed tar's: pack.tar_stream)


@dataclass
class Source:
    kind: str
    root: str
    names: list[str] | None
    split_images: dict[str, list[str]]  # absolute image paths, sorted
    skipped: list[dict] = field(default_factory=list)  # inputs rejected while listing
    coco: dict | None = None  # per image path: (rows, (W, H), polygons or None) for COCO sources
    annotations: dict | None = None  # per image path: its VOC XML (which may not exist), for VOC sources
    label_files: list[str] = field(default_factory=list)  # files all labels come from (COCO JSONs): in the cache key

    def count(self, split: str) -> int:
        return len(self.split_images[split])

    def label_of(self, path: str) -> str | None:
        """The label file of the image at `path` (it may not exist); None for a COCO JSON's and a class folder's."""
        if self.annotations is not None:
            return self.annotations[path]
        if self.kind == "classify":  # the class is the folder (fastload.pack.class_folders)
            return None
        return None if self.coco is not None else img2label_path(path)

    def items(self, split: str) -> Iterator[Item]:
        for path in self.split_images[split]:
            rel = self.rel(path)
            if self.coco is not None:
                yield Item(path, rel, coco=self.coco[path])
            else:
                label = self.label_of(path)
                if label is None:  # a class folder's image: no label file
                    yield Item(path, rel)
                    continue
                yield Item(path, rel, label=label, label_rel=self.rel(label) if self.annotations else label_rel(rel))

    def rel(self, path: str) -> str:
        """`path` as the store keeps it: relative to the dataset root (absolute when outside it)."""
        rel = os.path.relpath(path, self.root)
        return path if rel.startswith("..") else rel


def label_rel(image_rel: str) -> str:
    """The label path YOLOv5 would use for a relative image path."""
    return img2label_path(os.sep + image_rel)[1:] if not os.path.isabs(image_rel) else img2label_path(image_rel)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def list_images(folder: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[str]:
    """The files below `folder` (recursively, links followed) whose names end in one of `suffixes`, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(suffixes)]
    return sorted(found)


def _read_names_file(root: str) -> list[str] | None:
    for name in ("classes.txt", "names.txt"):
        p = os.path.join(root, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
    return None


def _subfolders(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def _split_folders(folder: str) -> dict[str, list[str]]:
    """Each subfolder of `folder` as a split (Roboflow's `valid` is val); images directly in it go to train."""
    splits: dict[str, list[str]] = {}
    for d in _subfolders(folder):
        splits.setdefault(SPLIT_FOLDERS.get(d.lower(), d), []).extend(list_images(os.path.join(folder, d)))
    direct = sorted(os.path.join(folder, f) for f in os.listdir(folder) if _is_image(f))
    if direct:
        splits.setdefault("train", []).extend(direct)
    return splits


def yolo_folder(root: str) -> Source:
    yamls = [f for f in ("data.yaml", "dataset.yaml") if os.path.isfile(os.path.join(root, f))]
    if yamls:
        return data_yaml(os.path.join(root, yamls[0]), root=root)  # the folder given wins over `path:`
    if os.path.isfile(os.path.join(root, "obj.data")):
        return darknet_folder(root)
    images = os.path.join(root, "images")
    if os.path.isdir(images):  # images/<split>/ (and labels/<split>/), as YOLOv5's datasets
        splits = _split_folders(images)
    elif any(d.lower() in SPLIT_FOLDERS for d in _subfolders(root)):  # <split>/images/ (Roboflow), or images/ itself
        splits = _split_folders(root)
    else:  # a flat folder of images with labels beside them
        splits = {"train": list_images(root)}
    return Source("yolo", root, _folder_names(root), splits)


def labelme_dataset(root: str) -> Source | None:
    """A LabelMe folder (fastload.pack.labelme): its images with a JSON beside them, split by `train/`, `val/`, ...
    subfolders where it has them (else all to train); None for a folder that is not one."""
    if os.path.isdir(os.path.join(root, "images")) or os.path.isfile(os.path.join(root, "obj.data")):
        return None  # YOLO's and Darknet's layouts
    if any(d.lower() in SPLIT_FOLDERS for d in _subfolders(root)):
        splits = _split_folders(root)
    else:
        splits = {"train": list_images(root)}
    annotations = labelme_images([p for ps in splits.values() for p in ps])
    if not annotations:
        return None
    names = labelme_names(root, [j for j in annotations.values() if os.path.isfile(j)])
    return Source("labelme", root, names, splits, annotations=annotations)


def _folder_names(root: str) -> list[str] | None:
    """`classes.txt` or `names.txt` in the folder; for an `images/` folder given itself, its dataset's: the parent's
    data.yaml names, or the parent's names file."""
    names = _read_names_file(root)
    parent = os.path.dirname(os.path.abspath(root))
    if names is not None or os.path.basename(os.path.abspath(root)).lower() != "images":
        return names
    for f in ("data.yaml", "dataset.yaml"):
        if os.path.isfile(os.path.join(parent, f)):
            return _names_from_yaml(_load_yaml(os.path.join(parent, f)), os.path.join(parent, f))
    return _read_names_file(parent)


def _names_from_yaml(cfg: dict, where: str) -> list[str] | None:
    names = cfg.get("names")
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names, key=int)]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    elif names is not None:
        raise FastloadError(f"{where}: 'names' must be a list or a mapping of id to name")
    nc = cfg.get("nc")
    if names is None and nc is not None:
        names = [str(i) for i in range(int(nc))]
    if names is not None and nc is not None and int(nc) != len(names):
        raise FastloadError(f"{where}: nc is {nc} but names has {len(names)} entries")
    return names


def _load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise FastloadError(f"{path}: cannot read data.yaml ({e.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise FastloadError(f"{path}: not a yolov5 data.yaml (expected a mapping)")
    return cfg


class _Missing(Exception):
    """A split's path of a data.yaml that does not exist: the line to say, unless its download: fetches it."""


def _yaml_splits(cfg: dict, root: str, path: str) -> dict[str, list[str]]:
    splits = {}
    for key in SPLIT_KEYS:
        entries = cfg.get(key)
        if not entries:
            continue
        files: list[str] = []
        for entry in [entries] if isinstance(entries, str) else entries:
            p = entry if os.path.isabs(entry) else os.path.normpath(os.path.join(root, entry))
            if not os.path.exists(p) and entry.startswith("../"):  # Roboflow's ../train/images: YOLOv5 drops ../
                p = os.path.normpath(os.path.join(root, entry[3:]))
            if os.path.isdir(p):
                files += list_images(p)
            elif os.path.isfile(p) and p.endswith(".txt"):  # a list file, lines relative to its folder
                files += _listed_files(p)
            elif os.path.isfile(p) and _is_image(p):
                files.append(p)
            else:
                raise _Missing(f"{path}: {key} path {p} does not exist")
        splits[key] = files
    return splits


def _listed_files(path: str) -> list[str]:
    """The image paths a list file names, relative to its folder. A path that does not exist there is read
    without its first folder where that exists (Darknet's lists, as CVAT writes them, start with `data/`)."""
    base, files = os.path.dirname(path), []
    with open(path, encoding="utf-8") as f:
        for line in (ln.strip() for ln in f):
            if not line:
                continue
            p = line if os.path.isabs(line) else os.path.normpath(os.path.join(base, line))
            if not os.path.exists(p) and "/" in line and not os.path.isabs(line):
                shorter = os.path.normpath(os.path.join(base, line.split("/", 1)[1]))
                p = shorter if os.path.exists(shorter) else p
            files.append(p)
    return files


def darknet_folder(root: str) -> Source:
    """A Darknet dataset (CVAT's "YOLO 1.1" export): `obj.data` (`names = obj.names`, `train = train.txt`, `valid =
    valid.txt`), labels beside the images in `obj_<subset>_data/`. Without its list files, each such folder is a
    split."""
    path = os.path.join(root, "obj.data")
    cfg = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, eq, value = line.split("#", 1)[0].partition("=")
            if eq:
                cfg[key.strip()] = value.strip()

    def here(p: str) -> str:  # Darknet's paths are relative to its own folder (data/obj.names): tried as given, then
        full = os.path.join(root, p)  # by name in the dataset's folder
        return full if os.path.exists(full) else os.path.join(root, os.path.basename(p))

    names_file = here(cfg.get("names", "obj.names"))
    names = None
    if os.path.isfile(names_file):
        with open(names_file, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
    lists = {s: here(cfg[k]) for s, k in (("train", "train"), ("val", "valid"), ("test", "test")) if cfg.get(k)}
    splits = {s: _listed_files(p) for s, p in lists.items() if os.path.isfile(p)}
    if not splits:
        for d in _subfolders(root):
            if d.startswith("obj_") and d.endswith("_data"):
                split = SPLIT_FOLDERS.get(d[4:-5].lower(), d[4:-5])
                splits.setdefault(split, []).extend(list_images(os.path.join(root, d)))
    return Source("darknet", root, names, splits)


def data_yaml(path: str, root: str | None = None) -> Source:
    """A YOLOv5 data.yaml. `root`: the folder it was found in, which wins over its `path:`; without one, `path:`
    (relative to the file) unless that does not exist (a dataset moved since), and a missing split fetches the
    file's `download:` (a .zip URL) beside `path:`, as YOLOv5 does."""
    cfg = _load_yaml(path)
    here = os.path.dirname(os.path.abspath(path))
    declared = None
    if root is None:
        declared = os.path.normpath(os.path.join(here, str(cfg.get("path") or "")))
        root = declared if os.path.isdir(declared) else here
    try:
        splits = _yaml_splits(cfg, root, path)
    except _Missing as missing:
        for base in (root, os.path.join(root, "images")):  # YOLOv5's VOC.yaml, its tars unpacked but not converted
            if folders := voc_folders(base):
                return voc_dataset(base, folders, _names_from_yaml(cfg, path))
        if declared is None or not cfg.get("download"):
            raise FastloadError(str(missing)) from None
        if root != declared:  # name the paths under path:, where the download goes
            try:
                _yaml_splits(cfg, declared, path)
            except _Missing as under:
                missing = under
        if "VOCdevkit" in str(cfg["download"]) and not is_url(str(cfg["download"]).strip()):  # YOLOv5's VOC.yaml
            raise FastloadError(f"{missing}; for Pascal VOC, unpack its archives (VOCtrainval_06-Nov-2007, "
                                f"VOCtest_06-Nov-2007, VOCtrainval_11-May-2012) into {declared}/images: fastload "
                                "reads the VOCdevkit there as it is") from None  # fmt: skip
        fetch_dataset(cfg["download"], os.path.dirname(declared) if cfg.get("path") else here, str(missing))
        root = declared if os.path.isdir(declared) else here
        try:
            splits = _yaml_splits(cfg, root, path)
        except _Missing as still:
            raise FastloadError(f"{still}, after fetching its download: {cfg['download']}") from None
    if not splits:
        raise FastloadError(f"{path}: no train/val/test entries")
    return Source("data.yaml", root, _names_from_yaml(cfg, path), splits)


def voc_dataset(root: str, folders: list[Folder], names: list[str] | None = None) -> Source:
    """A Pascal VOC dataset (see fastload.pack.voc). Its names: `names` (a data.yaml's), or `classes.txt` or
    `names.txt` in the folder (objects of other classes are left out), else every class its annotations name, sorted
    (VOC's 20 in YOLOv5's order)."""
    listing = voc_listing(root, folders)
    names = names or _read_names_file(root)
    names = names or voc_names(listing.labels[p] for ps in listing.splits.values() for p in ps)
    return Source("voc", root, names, listing.splits, listing.skipped, annotations=listing.labels)


def coco_json(path: str, images_dir: str | list[str] | None, split: str | None = None) -> Source:
    """The COCO instances JSON at `path`, its file_names in the folder `images_dir` (or in the first of several
    candidate folders that holds its first image)."""
    if not images_dir:
        raise FastloadError(f"{path}: a COCO JSON needs --coco-images DIR (the folder its file_names are in)")
    candidates = [images_dir] if isinstance(images_dir, str) else images_dir
    if not os.path.isdir(candidates[0]):
        raise FastloadError(f"{candidates[0]}: image folder does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        first = images[0]["file_name"] if images else ""
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise FastloadError(f"{path}: not a COCO instances JSON ({e.__class__.__name__}: {e})") from None
    images_dir = next((d for d in candidates if os.path.isfile(os.path.join(d, str(first)))), candidates[0])
    names = [c["name"] for c in cats]
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    rows: dict[int, list] = {}
    polygons: dict[int, list] = {}
    for a in data.get("annotations", []):
        x, y, w, h = a["bbox"]
        if a.get("iscrowd", 0) or w <= 0 or h <= 0:  # as YOLOv5's COCO converter
            continue
        rows.setdefault(a["image_id"], []).append([cat_index[a["category_id"]], x, y, w, h])
        polygons.setdefault(a["image_id"], []).append(coco_polygon(a.get("segmentation")))
    base = os.path.realpath(images_dir)
    coco, files, skipped = {}, [], []
    for im in sorted(images, key=lambda im: im["id"]):
        p = os.path.realpath(os.path.join(base, im["file_name"]))
        if os.path.commonpath([p, base]) != base:
            skipped.append({"path": im["file_name"], "reason": "path escapes the image folder"})
            continue
        boxes = np.asarray(rows.get(im["id"], []), np.float64).reshape(-1, 5)
        polys = polygons.get(im["id"], [])
        if all(poly is None for poly in polys):  # no polygon at all (a detection-only JSON): boxes only
            polys = None
        else:  # an annotation without a usable polygon: its box's corners, as for a YOLO file's box row
            polys = [
                np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) if poly is None else poly
                for (_, x, y, w, h), poly in zip(boxes.tolist(), polys, strict=True)
            ]
        coco[p] = (boxes, (im.get("width"), im.get("height")), polys)
        files.append(p)
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    split = split or next((k for k in SPLIT_KEYS if k in stem), "train")
    return Source("coco", images_dir, names, {split: files}, skipped, coco)


def coco_polygon(segmentation) -> np.ndarray | None:
    """An annotation's polygon in pixels as float64 [k, 2]: its parts of 3 points or more, joined one after another
    (ultralytics' JSON2YOLO joins a multi-part polygon at its parts' nearest points instead: the same points, another
    order); None for none or an RLE mask."""
    if not isinstance(segmentation, list):
        return None
    parts = []
    for part in segmentation:
        if isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0:
            try:
                parts.append(np.asarray(part, np.float64).reshape(-1, 2))
            except (TypeError, ValueError):
                return None
    return np.concatenate(parts) if parts else None


def find_source(src: str, coco_images: str | None = None, split: str | None = None) -> Source:
    if not os.path.exists(src):
        raise FastloadError(f"{src}: does not exist")
    if os.path.isdir(src):
        has_yaml = any(os.path.isfile(os.path.join(src, f)) for f in ("data.yaml", "dataset.yaml"))
        from fastload.pack.class_folders import class_folders  # (these build on this module)
        from fastload.pack.coco_folder import coco_folder, coco_jsons

        folders = [] if has_yaml else voc_folders(src)
        jsons = [] if has_yaml or folders else coco_jsons(src)
        classified = None if has_yaml or folders or jsons else class_folders(src)
        if classified is not None:
            source = classified
        elif folders:
            source = voc_dataset(src, folders)
        elif jsons:
            source = coco_folder(src, jsons)
        else:
            source = (None if has_yaml else labelme_dataset(src)) or yolo_folder(src)
    elif src.endswith((".yaml", ".yml")):
        source = data_yaml(src)
    elif src.endswith(".json"):
        source = coco_json(src, coco_images, split)
    else:
        raise FastloadError(f"{src}: not a dataset folder (YOLO, COCO or Pascal VOC), data.yaml, COCO JSON, archive or "
                            "fastload store")  # fmt: skip
    if not any(source.split_images.values()) and not source.skipped:
        names = sorted(os.listdir(src)) if os.path.isdir(src) else []
        archives = [f for f in names if archive_kind(os.path.join(src, f))]
        if archives:  # downloaded, not unpacked: they pack as they are
            shown = " ".join(os.path.join(src, a) for a in archives[:4]) + (" ..." if len(archives) > 4 else "")
            raise FastloadError(f"{src}: no images, but {len(archives)} archive(s) not unpacked: pack them as "
                                f"they are (fastload pack {shown} -o STORE)")  # fmt: skip
        raise FastloadError(f"{src}: empty dataset: no images found (expected images/<split>/*.jpg or a data.yaml)")
    return source
