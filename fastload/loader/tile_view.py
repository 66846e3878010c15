"""Image files seen as their tiles, for `detect --tile`'s sliced inference: each record a part of an image on
`pack --tile`'s grid, which the validation loader decodes as a region of interest (not the whole image again).

    view = TileView(files, Tiling(640, 0.2))
    loader = ValLoader(view, imgsz=640, batch=16, pad=0.0, device="cuda")   # view.owners[i]: the file of tile i
"""

from __future__ import annotations

import numpy as np

from fastload.pack.tiles import Tiling


class TileView:
    """The tiles of the images of `files` (fastload.loader.files.ImageFiles) that are larger than one tile:
    `regions` (x, y, w, h) in the image's pixels, `owners` (the file of each), `counts` (tiles per file), and the
    store interface the validation loader reads (`len`, `sizes`, `image(i)`: the file's bytes, `labels(i)`)."""

    def __init__(self, files, tiling: Tiling) -> None:
        self.files = files
        regions, owners = [], []
        for j, (h, w) in enumerate(files.sizes):
            windows = tiling.windows(int(h), int(w))
            if len(windows) > 1:  # one tile is the whole image, which the whole-image pass sees
                regions += [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows]
                owners += [j] * len(windows)
        self.regions = np.array(regions, np.int64).reshape(-1, 4)
        self.owners = np.array(owners, np.int64)
        self.counts = np.bincount(self.owners, minlength=len(files.sizes))
        self.sizes = self.regions[:, [3, 2]].astype(np.int32)  # (h, w) of each tile
        self.image_bytes = files.image_bytes  # a tile's batch carries its whole image's bytes
        self._last: tuple[int, bytes] = (-1, b"")  # the tiles of an image come together: read it once

    def __len__(self) -> int:
        return len(self.owners)

    def image(self, i: int) -> bytes:
        j = int(self.owners[i])
        if self._last[0] != j:
            self._last = (j, self.files.image(j))
        return self._last[1]

    def labels(self, i: int) -> np.ndarray:
        return np.zeros((0, 5), np.float32)

    def path_of(self, i: int) -> str:
        x, y, w, h = self.regions[i]
        return f"{self.files.path_of(int(self.owners[i]))} (tile {w}x{h} at {x},{y})"
