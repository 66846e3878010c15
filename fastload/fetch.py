"""Fetching what YOLOv5 fetches on its own: a data.yaml's `download:` zip, and release weights (`yolov5s.pt`) or a
weights URL. Bytes go to a temporary file that the caller checks before it is used or renamed into place, so a
failed or interrupted fetch leaves nothing a later run would take for the real thing."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from fastload.errors import JobFailed


def is_url(text: str) -> bool:
    return text.split("://", 1)[0] in ("http", "https", "file") and "://" in text


@contextmanager
def fetched(url: str, beside: str, why: str) -> Iterator[str]:
    """A temporary file beside the path `beside` holding `url`'s bytes (http, https or file), removed on leaving
    unless the caller renamed it. `why`: what the fetch is for, said before it starts and in front of its error."""
    part = f"{beside}.partial-{os.getpid()}"
    print(f"{why}; fetching {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            size = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc="fetch", disable=None, leave=False) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, ValueError, TimeoutError) as e:
        _remove(part)
        raise JobFailed(f"{why}; cannot fetch {url} ({getattr(e, 'reason', None) or e})") from None
    except BaseException:
        _remove(part)
        raise
    try:
        yield part
    finally:
        _remove(part)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
