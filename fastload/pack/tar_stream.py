"""A pack of compressed tars (.tar.gz, .tar.bz2, .tar.xz) without their images on disk. Unpacking leaves each image
an empty stand-in (fastload.pack.archive); a compressed tar cannot be read in place, so the pack reads it again,
front to back, once: the split with the most of its images is packed in the archive's order as they come, and the
other splits' images are written into their stand-ins on the way and packed from there (before, in a pass of their
own, when such a split is packed first: `--dedupe` packs train last). The disk holds the labels and those splits'
images, not the largest split's."""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from fastload.errors import JobFailed
from fastload.pack.archive import DAMAGED, STREAM, Unpacked, check_space, tar_members
from fastload.pack.sources import Item, Source


def is_streamed(got: Unpacked, path: str) -> bool:
    """Whether the image at the stand-in `path` is a compressed tar's."""
    m = got.members.get(path)
    return m is not None and isinstance(m[1], tuple) and m[1][0] == STREAM


def streamed(got: Unpacked, paths: list[str], spill: Iterable[str] = ()) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the compressed tars' image members whose stand-ins are at `paths` (in the archives' order),
    each tar read once, front to back; the members whose stand-ins are at `spill` are written into them on the way
    (they are then files like the labels). A member that cannot be read is not given (read_member then says why);
    the caller matches what comes by path. The unpacking folder is touched now and then: a sign of life for the
    processes that wait for the store (cache.wait_for_store)."""
    want = {path: got.members[path] for path in paths}
    touched = time.monotonic()
    spill = {path: got.members[path] for path in spill}
    for local in got.tars:
        need = {m[1][1]: path for path, m in (*want.items(), *spill.items()) if m[0] == local}
        if not need:
            continue
        try:
            with tarfile.open(local, "r:*") as tar:
                for k, m in tar_members(tar):
                    path = need.pop(k, None)
                    if time.monotonic() - touched > 1.0:
                        os.utime(got.folder)
                        touched = time.monotonic()
                    if path is not None:
                        data = tar.extractfile(m).read()
                        if path in spill:
                            _fill(got, path, data, m.mtime)
                        else:
                            yield path, data
                    if not need:
                        break
        except DAMAGED:
            continue  # the rest of this tar: read_member says what is wrong with each


def _fill(got: Unpacked, path: str, data: bytes, mtime: float) -> None:
    """Write a streamed member's bytes into its stand-in, which is then a file like any other."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise JobFailed(f"{got.inside(path)}: unpacking it: {e.strerror or e}") from None
    os.utime(path, (mtime, mtime))
    del got.members[path]


def fed(items: list[Item], stream: Iterator[tuple[str, bytes]]) -> Iterator[Item]:
    """`items` with the bytes that `stream` gives for them (matched by path, in order)."""
    pending = next(stream, None)
    for item in items:
        if pending is not None and pending[0] == item.image:
            item = replace(item, data=pending[1])
            pending = next(stream, None)
        yield item


class TarStreams:
    """How a pack of `source` (unpacked into `got`, its splits packed in `order`) reads the compressed tars' images:
    `begin(split)` before each split's items are listed gives the function that feeds them their bytes (None: they
    are files, or read in place), `end()` after it."""

    def __init__(self, got: Unpacked, source: Source, order: list[str]) -> None:
        self.got, self.source = got, source
        counts = {s: sum(is_streamed(got, p) for p in source.split_images[s]) for s in order}
        self.split = max(order, key=counts.get) if any(counts.values()) else None
        self.spill = [p for s in order if s != self.split for p in source.split_images[s] if is_streamed(got, p)]
        if self.spill:
            check_space(got.folder, sum(os.path.getsize(p) for p in self.spill), got.archive)
        self.stream: Iterator | None = None

    def begin(self, split: str) -> Callable[[list[Item]], Iterator[Item]] | None:
        if self.spill and split != self.split:  # a split packed before the streamed one: its images first
            for _ in streamed(self.got, [], self.spill):
                pass
            self.spill = []
        if split != self.split:
            return None
        order = {p: (self.got.tars.index(self.got.members[p][0]), self.got.members[p][1][1])
                 for p in self.source.split_images[split] if is_streamed(self.got, p)}  # fmt: skip
        self.source.split_images[split].sort(key=lambda p: order.get(p, (-1, 0)))  # in the archives' order

        def feed(items: list[Item]) -> Iterator[Item]:
            self.stream = streamed(self.got, [i.image for i in items if i.image in order], self.spill)
            return fed(items, self.stream)

        return feed

    def end(self) -> None:
        """After the streamed split: read the rest of the tars, writing the later splits' images."""
        if self.stream is not None:
            for _ in self.stream:
                pass
            self.stream, self.spill = None, []
