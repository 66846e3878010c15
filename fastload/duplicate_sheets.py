"""`fastload verify --duplicates --draw DIR`: each group of duplicates drawn as one picture, its images side by side
with their split and path under each, so the groups can be looked through before anything is left out."""

from __future__ import annotations

import os

from PIL import Image, ImageDraw, ImageFont

from fastload.loader.draw import save_image
from fastload.picture_hash import small
from fastload.store import open_store

DRAWN = 100  # groups drawn (the first listed: those across splits first)
SHOWN = 6  # images of a group drawn
HEIGHT, CAPTION, GAP = 240, 18, 8  # each image's height, the caption's under it, the space between images


def draw_groups(path: str, found: dict, folder: str, most: int = DRAWN) -> list[str]:
    """The first `most` groups of `found` (find_duplicates' result on the store at `path`) drawn into `folder`, one
    picture each, named by order, kind and splits (`0001_near_train+val.jpg`). Returns the files written."""
    stores: dict = {}
    font = ImageFont.load_default(size=12)
    written = []
    for k, group in enumerate(found["listed"][:most], 1):
        shown = group["images"][:SHOWN]
        tiles = [_picture(stores.setdefault(m["split"], open_store(path, m["split"])), m["index"]) for m in shown]
        sheet = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) + 1), HEIGHT + CAPTION + 2 * GAP),
                          "white")  # fmt: skip
        draw, x = ImageDraw.Draw(sheet), GAP
        for tile, member in zip(tiles, shown, strict=True):
            sheet.paste(tile, (x, GAP))
            text = f"{member['split']}/{member['path']}"
            while len(text) > 4 and draw.textlength(text, font=font) > tile.width:
                text = "..." + text[4:]  # the end of a long path: its file name
            draw.text((x, GAP + HEIGHT + 3), text, fill=(0, 0, 0), font=font)
            x += tile.width + GAP
        name = f"{k:04d}_{group['kind']}_{'+'.join(group['splits'])}.jpg"
        os.makedirs(folder, exist_ok=True)
        save_image(sheet, os.path.join(folder, name))
        written.append(os.path.join(folder, name))
    return written


def _picture(store, index: int) -> Image.Image:
    """Record `index`'s image at HEIGHT pixels high (grey where it does not decode: an exact copy of a damaged one)."""
    image = small(bytes(store.image(index)), (HEIGHT * 2, HEIGHT))
    if image is None:
        return Image.new("RGB", (HEIGHT, HEIGHT), (128, 128, 128))
    width = max(1, round(image.width * HEIGHT / image.height))
    return image.resize((width, HEIGHT), Image.Resampling.BILINEAR)
