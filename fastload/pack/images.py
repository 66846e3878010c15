"""Inspect one input image cheaply and convert it only when the GPU decoder needs it.

Baseline or progressive 8-bit JPEGs (RGB or grayscale) without an EXIF rotation are kept byte for byte.
Anything else (PNG, BMP, TIFF, WebP, CMYK, 16-bit, EXIF-rotated, or larger than --max-side) is decoded,
made upright 8-bit RGB, shrunk if asked, and re-encoded as JPEG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from fastload.errors import BadInput

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".mpo", ".dng", ".pfm")
KEEP_MODES = ("RGB", "L")
EXIF_ORIENTATION = 0x0112
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is bad input, not something to paper over
Image.MAX_IMAGE_PIXELS = 1 << 28  # ~268 MP: still refuses decompression bombs


@dataclass(slots=True)
class PackedImage:
    data: bytes
    size: tuple[int, int]  # (h, w), upright
    note: str = ""  # what was converted, for the report
    labelled: tuple[int, int] | None = None  # (h, w) upright before --max-side shrank it (pixel labels' frame)

    def __post_init__(self) -> None:
        self.labelled = self.labelled or self.size


def _jpeg_ends(data: bytes) -> bool:
    """A complete JPEG ends with the EOI marker (some writers pad with zeros or newlines after it)."""
    return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


def _trim_after_end(data: bytes) -> tuple[bytes, str]:
    """A JPEG with bytes after its end-of-image marker (some cameras and scrapers append them; YOLOv5 re-saves such
    a file as "corrupt JPEG restored"): the JPEG up to its marker, byte for byte, when that decodes whole; BadInput
    for one that has no end (truncated)."""
    end = data.rfind(b"\xff\xd9") + 2
    if end > 2:
        try:
            Image.open(io.BytesIO(data[:end])).load()  # the last marker may be an EXIF thumbnail's: decode it all
            return data[:end], f"{len(data) - end} bytes after the JPEG's end dropped"
        except (OSError, ValueError, SyntaxError):
            pass
    raise BadInput("truncated JPEG (no end-of-image marker)")


def _to_rgb8(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or wider gray: scale, don't clip
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "L")
    return im if im.mode == "RGB" else im.convert("RGB")


def encode_jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality, subsampling=2 if quality < 90 else 0)
    return out.getvalue()


def pack_image(data: bytes, max_side: int | None = None, quality: int = 95) -> PackedImage:
    """Validate `data` and return what the store keeps; BadInput with the reason if it is unusable."""
    if not data:
        raise BadInput("empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadInput("not an image (unrecognised format)") from None
    except Exception as e:
        raise BadInput(f"unreadable image header ({e})") from None
    w, h = im.size
    if w < 2 or h < 2:
        raise BadInput(f"image too small ({w}x{h})")
    fmt = im.format
    orientation = im.getexif().get(EXIF_ORIENTATION, 1) if fmt in ("JPEG", "MPO", "TIFF", "PNG", "WEBP") else 1
    note = ""
    if fmt == "JPEG" and not _jpeg_ends(data):
        data, note = _trim_after_end(data)
        im = Image.open(io.BytesIO(data))
    too_big = bool(max_side) and max(w, h) > max_side
    if fmt == "JPEG" and im.mode in KEEP_MODES and orientation in (0, 1) and not too_big:
        return PackedImage(data, (h, w), note)

    try:
        im.load()
        notes = [note] if note else []
        notes += [] if fmt == "JPEG" and im.mode in KEEP_MODES else [f"converted {fmt} {im.mode}"]
        if orientation not in (0, 1):
            im = ImageOps.exif_transpose(im)
            notes.append(f"EXIF orientation {orientation} applied")
        im = _to_rgb8(im)
        labelled = (im.height, im.width)
    except (OSError, ValueError, SyntaxError) as e:
        raise BadInput(f"corrupt {fmt or 'image'} data ({e})") from None
    if too_big:
        scale = max_side / max(im.size)
        new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(new, Image.Resampling.BOX if scale < 0.5 else Image.Resampling.BILINEAR)
        notes.append(f"shrunk to {new[0]}x{new[1]}")
    return PackedImage(encode_jpeg(im, quality), (im.height, im.width), "; ".join(notes), labelled)
