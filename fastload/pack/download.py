"""A data.yaml's `download:`, as YOLOv5's check_dataset reads it: a .zip URL is fetched and unpacked beside the
dataset's folder (coco128.yaml: `path: ../datasets/coco128`, the zip holds `coco128/`). YOLOv5 also runs a
`download:` that is a bash or Python script; fastload does not run code from a data file and says so."""

from __future__ import annotations

import os
import shutil
import zipfile

from fastload.errors import FastloadError, JobFailed
from fastload.fetch import fetched, is_url


def fetch_dataset(download, into: str, missing: str) -> None:
    """Fetch `download` (a .zip URL: http, https or file) and unpack it into the folder `into`: unpacked into a
    temporary folder whose entries are then renamed into place. `missing`: the line saying what the data.yaml lacks,
    which every message starts with."""
    url = download.strip() if isinstance(download, str) else ""
    if not (is_url(url) and url.split("?")[0].endswith(".zip")):
        raise FastloadError(f"{missing}; its download: is a script, which fastload does not run (YOLOv5 does): "
                            "fetch the dataset with YOLOv5 or by hand")  # fmt: skip
    os.makedirs(into, exist_ok=True)
    unpacked = os.path.join(into, f".unpacked.partial-{os.getpid()}")
    with fetched(url, os.path.join(into, os.path.basename(url.split("?")[0])), missing) as part:
        try:
            with zipfile.ZipFile(part) as z:  # ZipFile drops absolute paths and '..' from member names
                z.extractall(unpacked)
            _merge(unpacked, into)
        except zipfile.BadZipFile:
            raise JobFailed(f"{missing}; its download: {url} is not a zip file") from None
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)


def _merge(src: str, dst: str) -> None:
    """Move what `src` holds into `dst` by renames; a file already in `dst` is kept (as unzip -n)."""
    for name in sorted(os.listdir(src)):
        a, b = os.path.join(src, name), os.path.join(dst, name)
        if not os.path.exists(b):
            os.rename(a, b)
        elif os.path.isdir(a) and os.path.isdir(b):
            _merge(a, b)
