"""A data.yaml's `download:`, as YOLOv5's check_dataset reads it: a .zip URL is fetched and unpacked beside the
dataset's folder (coco128.yaml: `path: ../datasets/coco128`, the zip holds `coco128/`). YOLOv5 also runs a
`download:` that is a bash or Python script; fastload does not run code from a data file and says so."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile

from tqdm import tqdm

from fastload.errors import FastloadError, JobFailed


def is_zip_url(download) -> bool:
    return isinstance(download, str) and download.split("?")[0].endswith(".zip") and "://" in download.split()[0]


def fetch_dataset(download, into: str, missing: str) -> None:
    """Fetch `download` (a .zip URL: http, https or file) and unpack it into the folder `into`. The zip is written
    under a temporary name and unpacked into a temporary folder whose entries are then renamed into place, so an
    interrupted fetch leaves nothing a later run would take for the dataset. `missing`: the line saying what the
    data.yaml lacks, which every message starts with."""
    if not is_zip_url(download):
        raise FastloadError(f"{missing}; its download: is a script, which fastload does not run (YOLOv5 does): "
                            "fetch the dataset with YOLOv5 or by hand")  # fmt: skip
    url = download.strip()
    os.makedirs(into, exist_ok=True)
    part = os.path.join(into, f"{os.path.basename(url.split('?')[0])}.partial-{os.getpid()}")
    unpacked = os.path.join(into, f".unpacked.partial-{os.getpid()}")
    print(f"{missing}; fetching its download: {url} into {into}", file=sys.stderr)
    try:
        _get(url, part)
        with zipfile.ZipFile(part) as z:  # ZipFile drops absolute paths and '..' from member names
            z.extractall(unpacked)
        _merge(unpacked, into)
    except (urllib.error.URLError, ValueError) as e:
        raise JobFailed(f"{missing}; cannot fetch its download: {url} ({getattr(e, 'reason', e)})") from None
    except zipfile.BadZipFile:
        raise JobFailed(f"{missing}; its download: {url} is not a zip file") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        if os.path.exists(part):
            os.remove(part)


def _get(url: str, path: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        size = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc="download", disable=None, leave=False) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))


def _merge(src: str, dst: str) -> None:
    """Move what `src` holds into `dst` by renames; a file already in `dst` is kept (as unzip -n)."""
    for name in sorted(os.listdir(src)):
        a, b = os.path.join(src, name), os.path.join(dst, name)
        if not os.path.exists(b):
            os.rename(a, b)
        elif os.path.isdir(a) and os.path.isdir(b):
            _merge(a, b)
