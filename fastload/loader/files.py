"""Image files read as one split of a store, so that the validation loader (DALI decode and letterbox, on the GPU
with a device) runs over a folder of pictures: what `fastload detect` feeds the model.

    files, skipped = scan_images(find_images(["photos/", "extra.jpg"]))
    loader = ValLoader(files, imgsz=640, batch=16, pad=0.0, device="cuda")
"""

from __future__ import annotations

import glob
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fastload.errors import BadInput, FastloadError
from fastload.fetch import fetched, is_url
from fastload.loader.stream import is_stream, stream_sources
from fastload.pack.images import IMAGE_SUFFIXES, PackedImage, pack_image
from fastload.pack.sources import list_images
from fastload.pool import died_reading, ordered_map


def _packed(path: str) -> PackedImage:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadInput(f"unreadable ({e.strerror or e})") from None
    return pack_image(data)


def read_image(path: str) -> bytes:
    """What the decoder gets for a file: its bytes when they are a plain JPEG, else an upright 8-bit JPEG made
    from it (PNG, EXIF-rotated, CMYK ...), as `fastload pack` stores it; BadInput when it is no usable image."""
    return _packed(path).data


def _inspect(path: str) -> tuple[str, tuple[int, int] | None, int, str]:
    try:
        packed = _packed(path)
    except BadInput as e:
        return path, None, 0, str(e)
    return path, packed.size, len(packed.data), ""


def _inspect_died(path: str, how: str) -> tuple[str, None, int, str]:
    return path, None, 0, died_reading(how)


@dataclass
class ImageFiles:
    """Image files with their upright (h, w): `len`, `sizes`, `image(i)`, `labels(i)` (none), `path_of(i)`,
    `image_bytes` (the mean size of what the decoder gets).
    `out_names[i]` is where a result for file i goes below an output folder: its path below the folder it was
    found in (or its file name), unique."""

    paths: list[str]
    sizes: np.ndarray  # int32 [N, 2]
    out_names: list[str]
    image_bytes: float = 0.0

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> bytes:
        try:
            return read_image(self.paths[i])
        except BadInput as e:  # it was readable when scanned
            raise FastloadError(f"{self.paths[i]}: {e} (changed while being read)") from None

    def labels(self, i: int) -> np.ndarray:
        return np.zeros((0, 5), np.float32)

    def path_of(self, i: int) -> str:
        return self.paths[i]


VIDEO_SUFFIXES = (".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv")  # YOLOv5's


def find_images(
    sources: list[str], videos: list[tuple[str, str]] | None = None, streams: list[str] | None = None
) -> list[tuple[str, str]]:
    """(file, its name below the output folder) for every image in `sources`, as YOLOv5's detect.py takes them:
    image files, folders (searched recursively for IMAGE_SUFFIXES), glob patterns (`photos/*.jpg`, `**` for any
    depth), `.txt` files listing one of those a line (relative to the current folder or to the list), and image and
    video URLs (fetched to their file name here unless that exists, as YOLOv5's check_file). Video files
    (VIDEO_SUFFIXES), as sources, in folders, globs or at URLs, go to `videos` as (file, name); without that list
    they are an error. Webcams and streams (fastload.loader.stream: camera numbers, stream URLs, `.streams` lists)
    go to `streams`; without that list they are an error. A FastloadError names a source that does not exist or
    finds nothing."""
    found, takes_videos = [], videos is not None
    videos = videos if takes_videos else []
    media, kind = ((*IMAGE_SUFFIXES, *VIDEO_SUFFIXES), "image or video") if takes_videos else (IMAGE_SUFFIXES, "image")
    for src in sources:
        if is_url(src) and _suffix(src.split("?")[0], media):
            name = os.path.basename(urllib.parse.unquote(src.split("?")[0]))
            found.append((fetch_media(src, _probe_video if _suffix(name, VIDEO_SUFFIXES) else _packed), name))
        elif is_stream(src):
            if streams is None:
                raise FastloadError(f"{src}: a webcam or stream; this reads image files only")
            streams += stream_sources(src)
        elif os.path.isdir(src):
            named = [(p, os.path.relpath(p, src)) for p in list_images(src, media)]
            if not named:
                raise FastloadError(f"{src}: no {kind} files ({' '.join(media)})")
            found += named
        elif os.path.isfile(src) and src.lower().endswith(".txt"):
            found += find_images(_listed(src), videos if takes_videos else None, streams)
        elif os.path.isfile(src):
            found.append((src, os.path.basename(src)))
        elif glob.has_magic(src):
            named = [(p, os.path.basename(p)) for p in sorted(glob.glob(src, recursive=True)) if _suffix(p, media)]
            if not named:
                raise FastloadError(f"{src}: no {kind} files match")
            found += named
        else:
            raise FastloadError(f"{src}: no such file or folder")
    for path, _ in found:
        if _suffix(path, VIDEO_SUFFIXES) and not takes_videos:
            raise FastloadError(f"{path}: a video; extract its frames (ffmpeg -i {path} frames/%06d.jpg) and detect "
                                "those")  # fmt: skip
    videos += [(path, name) for path, name in found if _suffix(path, VIDEO_SUFFIXES)]
    return [(path, name) for path, name in found if not _suffix(path, VIDEO_SUFFIXES)]


def _suffix(path: str, suffixes: tuple[str, ...]) -> bool:
    return path.lower().endswith(suffixes)


def _listed(path: str) -> list[str]:
    """The sources a `.txt` list names, one a line; a relative one that does not exist from here is taken relative
    to the list's folder (YOLOv5 reads them from the current folder, its dataset lists from theirs)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise FastloadError(f"{path}: not a readable list of images ({getattr(e, 'strerror', None) or e})") from None
    if not lines:
        raise FastloadError(f"{path}: an empty list of images")
    here = os.path.dirname(path)
    return [p if os.path.isabs(p) or os.path.exists(p) or is_url(p) else os.path.join(here, p) for p in lines]


def fetch_media(url: str, check: Callable[[str], object] = _packed) -> str:
    """The file an image or video URL was fetched to: its file name in the current folder (kept, as YOLOv5 keeps it,
    and not fetched again while it exists); what `check` finds unusable (BadInput: an error page) is not kept: a
    FastloadError."""
    path = os.path.basename(urllib.parse.unquote(url.split("?")[0]))
    if not os.path.isfile(path):
        with fetched(url, path, f"{path}: a URL") as part:
            try:
                check(part)
            except BadInput as e:
                raise FastloadError(f"{url}: {e}") from None
            os.replace(part, path)
    return path


def _probe_video(path: str) -> None:
    from fastload.loader.video import probe  # PyAV, only for videos

    probe(path)


def unique_names(names: list[str]) -> list[str]:
    """The same names, with `_2`, `_3` ... before the extension of a repeated one (two folders' 1.jpg)."""
    seen, out = set(), []
    for name in names:
        root, ext = os.path.splitext(name)
        candidate, k = name, 1
        while candidate in seen:
            k += 1
            candidate = f"{root}_{k}{ext}"
        seen.add(candidate)
        out.append(candidate)
    return out


def scan_images(
    found: list[tuple[str, str]],
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    required: bool = True,
) -> tuple[ImageFiles, list[dict]]:
    """The usable images among `found` (find_images' list) and the unusable ones as [{path, reason}]; a
    FastloadError when none is usable and one is `required`."""
    usable, out_names, sizes, skipped, total = [], [], [], [], 0
    checked = ordered_map(_inspect, [path for path, _ in found], workers, died=_inspect_died)
    for (path, size, nbytes, reason), (_, name) in zip(checked, found, strict=True):
        if progress:
            progress(1)
        if size is None:
            skipped.append({"path": path, "reason": reason})
            continue
        usable.append(path)
        out_names.append(name)
        sizes.append(size)
        total += nbytes
    if not usable and not required:
        return ImageFiles([], np.zeros((0, 2), np.int32), []), skipped
    if not usable:
        if skipped:
            first = skipped[0]
            raise FastloadError(f"{first['path']}: {first['reason']} (no usable image among {len(skipped)} files)")
        kinds = " ".join(IMAGE_SUFFIXES)
        raise FastloadError(f"no image files ({kinds}) found")
    files = ImageFiles(usable, np.array(sizes, np.int32).reshape(-1, 2), unique_names(out_names), total / len(usable))
    return files, skipped
