"""A dataset that comes as an archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz: YOLOv5's coco128.zip,
Roboflow's and Kaggle's exports), or as several (VOC's tars, COCO's zips), is packed as the folder they hold:
unpacked into a temporary folder beside the store being written, packed, and removed, whatever happens. The images
of an archive are not copied out: each gets an empty stand-in of its size (a sparse file), so the disk holds only
the labels. The pack's workers read a zip's or an uncompressed tar's images in place; a compressed tar cannot be
read in place, so it is read again, front to back, as its images are packed (`streamed`): the split with the most
of them in the archive's order, while the other splits' images are written into their stand-ins and packed from
there."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image
from tqdm import tqdm

from fastload.errors import BadInput, FastloadError, JobFailed
from fastload.fetch import fetched, is_url
from fastload.pack.images import IMAGE_SUFFIXES
from fastload.store.tempfiles import remove_stale_partials

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
STREAM = "stream"  # a compressed tar's member: read by `streamed`, in the archive's order
HEADER = 1 << 17  # bytes of an image that hold its size (a JPEG's EXIF block comes before it: up to 64 KB)
JUNK = ("__MACOSX",)  # macOS's resource forks: `__MACOSX/` and `._name` files, which are not images


def archive_kind(path: str) -> str | None:
    """ "zip" or "tar" for a file or an http, https or file URL named as an archive, else None."""
    if is_url(path):
        path = path.split("?", 1)[0]
    elif "://" in path or not os.path.isfile(path):
        return None
    name = path.lower()
    return "zip" if name.endswith(ZIP_SUFFIXES) else "tar" if name.endswith(TAR_SUFFIXES) else None


def archive_kinds(archives: list[str]) -> list[str]:
    """Each archive's kind ("zip" or "tar"); a one-line error naming the first that is not an archive."""
    kinds = [archive_kind(a) for a in archives]
    for a, kind in zip(archives, kinds, strict=True):
        if kind is None and not is_url(a) and not os.path.exists(a):
            raise FastloadError(f"{a}: no such file")
        if kind is None:
            raise FastloadError(f"{a}: not an archive (.zip, .tar, .tar.gz, .tar.bz2, .tar.xz): several sources "
                                "are archives unpacked into one folder; pack a folder on its own")  # fmt: skip
    return kinds


def several_archives(src: str | list[str]) -> list[str] | None:
    """The archives that `src` names when it names two or more: a list, or their paths joined by commas
    (`--data train2017.zip,val2017.zip,annotations_trainval2017.zip`); else None. A one-line error names a part
    that is not an archive."""
    if isinstance(src, str):
        if "," not in src or os.path.exists(src) or archive_kind(src):  # (a URL's query may hold commas)
            return None
        src = [p.strip() for p in src.split(",") if p.strip()]
    if len(src) < 2:
        return None
    archive_kinds(src)
    return list(src)


def archive_stem(path: str) -> str:
    """The archive's name without its suffixes: coco128.zip, coco128.tar.gz -> coco128."""
    name = os.path.basename(path.split("?", 1)[0])
    for suffix in sorted(ZIP_SUFFIXES + TAR_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "data"
    return name


@dataclass
class Unpacked:
    """Where the archives were unpacked, the dataset folder in it, and what of them was not unpacked."""

    archive: str  # the archive, or several joined by " + " (what messages name)
    folder: str  # the temporary folder
    root: str  # the dataset: the archive's one top folder, or else the temporary folder itself
    skipped: list[dict] = field(default_factory=list)
    members: dict[str, tuple] = field(default_factory=dict)  # images not unpacked, by stand-in: see read_member
    damaged: set[str] = field(default_factory=set)  # paths of the members not unpacked for their damaged data
    tars: list[str] = field(default_factory=list)  # the compressed tars' files, in the order unpacked
    sizes: dict[str, tuple[int, int] | None] | None = None  # with unpacked(sizes=True): each image's (w, h) or None

    def adopt(self, source) -> None:
        """Make `source`, the listing of the folder, the archive's: what was not unpacked joins its skipped inputs,
        every path named inside the archive, and each image whose label file was damaged in the archive is left
        out (packed without it, its objects would be missing without a word)."""
        source.skipped = [{**s, "path": self.inside(s["path"])} for s in self.skipped + source.skipped]
        for split, paths in source.split_images.items():
            keep = []
            for p in paths:
                label = source.label_of(p)
                if label in self.damaged:
                    why = f"its label file {self.inside(label)} was damaged in the archive"
                    source.skipped.append({"path": source.rel(p), "reason": why})
                else:
                    keep.append(p)
            source.split_images[split] = keep

    def inside(self, text: str) -> str:
        """`text` with the temporary folder's paths written as paths inside the archive (coco128.zip/coco128/…)."""
        return text.replace(self.folder + os.sep, self.archive + "/").replace(self.folder, self.archive)


@contextmanager
def unpacked(archives: list[str], beside: str, quiet: bool = False, sizes: bool = False) -> Iterator[Unpacked]:
    """Unpack the archives, one after another, into `<beside>.unpacking-<pid>` (a temporary folder where `beside`
    is a URL) and yield it; removed on the way out. A FastloadError raised meanwhile names paths inside the
    archive, not the folder. `sizes`: read each image's size from its header on the way (Unpacked.sizes)."""
    if "://" in beside:
        folder = tempfile.mkdtemp(prefix="fastload-unpacking-")
    else:
        beside = os.path.abspath(beside)
        os.makedirs(os.path.dirname(beside), exist_ok=True)
        remove_stale_partials(beside, "unpacking")  # left by a pack that was killed
        folder = f"{beside}.unpacking-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    got = Unpacked(" + ".join(archives), folder, folder, sizes={} if sizes else None)
    try:
        with contextlib.ExitStack() as fetches:  # a fetched zip stays while the pack reads its images in place
            for k, archive in enumerate(archives):
                if is_url(archive):  # fetched beside the folder first (a tar.gz could stream, a zip cannot)
                    local = fetches.enter_context(fetched(archive, f"{folder}-{k}", f"{archive}: an archive to pack"))
                else:
                    local = archive
                _unpack_one(got, archive, local, quiet)
            got.root = _dataset_root(folder)
            try:
                yield got
            finally:
                close_members()
    except FastloadError as e:
        damaged = [s for s in got.skipped if s["path"] in archives]  # what is missing may be what was cut off
        why = f" ({damaged[0]['path']}: {damaged[0]['reason']})" if damaged else ""
        raise type(e)(got.inside(e.message) + why) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_OPEN: dict[tuple[int, str], zipfile.ZipFile | io.BufferedReader] = {}  # per process: a forked worker opens its own


def read_member(member: tuple) -> bytes:
    """The bytes of an image member not unpacked, `member` as Unpacked.members holds it: (the archive's file, the
    zip member's name, the tar member's (offset, size) or a compressed tar's (STREAM, its index), the archive as
    messages name it). A compressed tar's member is found by reading the tar from its start (`streamed` reads
    them all in one pass; this is for one it did not give). A damaged one is a BadInput naming it."""
    local, where, archive = member
    try:
        if isinstance(where, tuple) and where[0] == STREAM:
            return _stream_one(local, where[1])
        opened = _OPEN.get((os.getpid(), local))
        if opened is None:
            opened = open(local, "rb") if isinstance(where, tuple) else zipfile.ZipFile(local)  # noqa: SIM115
            _OPEN[os.getpid(), local] = opened
        if isinstance(where, str):
            return opened.read(where)
        data = os.pread(opened.fileno(), where[1], where[0])
        if len(data) != where[1]:
            raise EOFError(f"{len(data)} of its {where[1]} bytes there: the archive is cut short")
        return data
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError, *DAMAGED) as e:
        raise BadInput(f"cannot read it from {archive}: {e or type(e).__name__}") from None


def tar_members(tar: tarfile.TarFile) -> Iterator[tuple[int, tarfile.TarInfo]]:
    """(index, member) of each of the tar's members, front to back, without the list of them all that tarfile
    keeps (memory stays bounded however many it holds)."""
    for k, m in enumerate(tar):
        yield k, m
        tar.members.clear()  # iteration goes on from the file (tarfile.next), not from the list


def _stream_one(local: str, index: int) -> bytes:
    with tarfile.open(local, "r:*") as tar:
        for k, m in tar_members(tar):
            if k == index:
                return tar.extractfile(m).read()
    raise EOFError("the archive ends before it")


def close_members() -> None:
    """Close the archives this process opened to read members in place."""
    for key in [k for k in _OPEN if k[0] == os.getpid()]:
        _OPEN.pop(key).close()


def _dataset_root(folder: str) -> str:
    """The archive's one top folder when it holds nothing else (coco128.zip holds coco128/), else the folder."""
    entries = [e for e in os.listdir(folder) if not e.startswith(".") and e not in JUNK]
    only = os.path.join(folder, entries[0]) if len(entries) == 1 else None
    return only if only and os.path.isdir(only) else folder


def _is_junk(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return parts[0] in JUNK or parts[-1].startswith("._")


def check_space(folder: str, need: int, archive: str) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        where = os.path.dirname(folder) or folder
        raise JobFailed(f"{archive}: unpacking it takes {need / 1e9:.1f} GB and {where} has {free / 1e9:.1f} GB "
                        "free: unpack it where there is room and pack the folder")  # fmt: skip


class _Progress(tqdm):
    """The unpacking's bar; it also touches the folder now and then, a sign of life for the processes that wait for
    the store (`cache.wait_for_store`: other ranks)."""

    def __init__(self, got: Unpacked, archive: str, total: int | None, quiet: bool) -> None:
        name = os.path.basename(archive)
        bar = {"unit": "B", "unit_scale": True, "disable": quiet or None, "leave": False}
        super().__init__(total=total, desc=f"unpack {name}", **bar)
        self.folder, self.touched = got.folder, time.monotonic()

    def update(self, n: int = 1) -> None:
        super().update(n)
        if time.monotonic() - self.touched > 1.0:
            os.utime(self.folder)
            self.touched = time.monotonic()


def disk_use(folder: str) -> int:
    """The bytes the files under `folder` take on disk (a stand-in's hole takes none)."""
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(folder) for f in files)


def _stand_in(path: str, size: int, mtime: float | None = None) -> None:
    """An empty file of `size` bytes at `path` (a hole: no disk) for an image read from the archive, not unpacked."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _header_size(head: bytes) -> tuple[int, int] | None:
    """An image's (width, height) from its first bytes; None when they are not an image's."""
    try:
        with Image.open(io.BytesIO(head)) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _member_path(folder: str, name: str) -> str:
    """Where the member `name` goes: as ZipFile.extract places it, with absolute paths and '..' dropped."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return os.path.join(folder, *parts)


def _unpack_one(got: Unpacked, archive: str, local: str, quiet: bool) -> None:
    """Unpack the archive `archive` (named so in messages), whose bytes are in the file `local`."""
    _unzip(got, archive, local, quiet) if archive_kind(archive) == "zip" else _untar(got, archive, local, quiet)


def _unzip(got: Unpacked, archive: str, local: str, quiet: bool) -> None:
    try:
        z = zipfile.ZipFile(local)
    except (zipfile.BadZipFile, OSError) as e:
        raise FastloadError(f"{archive}: not a readable zip archive ({e})") from None
    with z:
        members = [m for m in z.infolist() if not m.is_dir() and not _is_junk(m.filename)]
        in_place = {m.filename for m in members if m.filename.lower().endswith(IMAGE_SUFFIXES)}
        check_space(got.folder, sum(m.file_size for m in members if m.filename not in in_place), archive)
        with _Progress(got, archive, sum(m.file_size for m in members), quiet) as bar:
            for m in members:
                path = _member_path(got.folder, m.filename)
                if path == got.folder:
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                try:
                    if m.filename in in_place:  # an empty file of its size (a hole: no disk), read from the zip
                        _stand_in(path, m.file_size)
                        got.members[path] = (local, m.filename, archive)
                        if got.sizes is not None:
                            with z.open(m) as src:
                                got.sizes[path] = _header_size(src.read(HEADER))
                    else:
                        with z.open(m) as src, open(path, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                except OSError as e:
                    raise JobFailed(f"{archive}/{m.filename}: unpacking it: {e.strerror or e}") from None
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
                    os.remove(path)  # a bad CRC shows at its end: what was written is not the file
                    got.damaged.add(path)
                    got.skipped.append({"path": f"{archive}/{m.filename}", "reason": f"not unpacked: {e}"})
                    continue
                when = time.mktime((*m.date_time, 0, 0, -1))  # kept, so that a pack again finds it unchanged
                os.utime(path, (when, when))
                bar.update(m.file_size)


DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)  # gzip and bz2 raise errno-less OSErrors


def _untar(got: Unpacked, archive: str, local: str, quiet: bool) -> None:
    if not hasattr(tarfile, "data_filter"):  # the filter that keeps members inside the folder (PEP 706)
        raise FastloadError(f"{archive}: unpacking a tar safely needs Python 3.10.12, 3.11.4 or later: "
                            "unpack it by hand and pack the folder")  # fmt: skip
    raw = open(local, "rb")  # noqa: SIM115 (closed below): where in the file the reading is, for the bar
    try:
        tar = tarfile.open(fileobj=raw, mode="r:*")
    except DAMAGED as e:
        raw.close()
        raise FastloadError(f"{archive}: not a readable tar archive ({e})") from None
    in_place = not isinstance(tar.fileobj, gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile)  # its images read in place
    if not in_place:
        got.tars.append(local)
    count, current = 0, None
    with raw, tar, _Progress(got, archive, os.fstat(raw.fileno()).st_size, quiet) as bar:
        try:
            for k, m in tar_members(tar):  # front to back: a compressed tar cannot be read otherwise
                if not (m.isfile() or m.isdir()) or _is_junk(m.name):
                    continue  # links, devices and fifos are not a dataset's files
                current = m
                try:
                    if m.isfile() and not m.issparse() and m.name.lower().endswith(IMAGE_SUFFIXES):
                        path = os.path.join(got.folder, tarfile.data_filter(m, got.folder).name)  # checked as extract
                        _stand_in(path, m.size, m.mtime)  # an empty file of its size, as a zip's images get
                        got.members[path] = (local, (m.offset_data, m.size) if in_place else (STREAM, k), archive)
                        if got.sizes is not None:
                            got.sizes[path] = _header_size(tar.extractfile(m).read(HEADER))
                    else:
                        tar.extract(m, got.folder, set_attrs=m.isfile(), filter="data")
                except tarfile.FilterError as e:
                    got.skipped.append({"path": f"{archive}/{m.name}", "reason": f"not unpacked: {e}"})
                    continue
                except OSError as e:
                    if e.errno is None:
                        raise  # the archive's data, not the disk
                    raise JobFailed(f"{archive}/{m.name}: unpacking it: {e.strerror or e}") from None
                current = None
                count += m.isfile()
                bar.update(raw.tell() - bar.n)  # the archive's bytes read so far (compressed, for a .tar.gz): an ETA
        except DAMAGED as e:  # truncated or damaged: what came before it is packed
            if current is not None and current.isfile():
                with contextlib.suppress(OSError):
                    os.remove(_member_path(got.folder, current.name))  # cut short
            reason = f"damaged after {count} files ({e or type(e).__name__}): the rest of it is not unpacked"
            got.skipped.append({"path": archive, "reason": reason})
