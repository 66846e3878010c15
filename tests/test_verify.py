"""`fastload verify` finds a flipped byte and names the record; `--decode` finds an undecodable image."""

import os

import numpy as np
import pytest
from conftest import cli, cli_process, jpeg_bytes

from fastload.pack import PackOptions, pack
from fastload.store import open_store, open_writer
from fastload.store.record import Record


def _flip_inside(path: str, needle: bytes) -> None:
    """Flip one byte in the middle of `needle`'s first occurrence in the file(s) at `path`."""
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for f in files:
        data = bytearray(open(f, "rb").read())
        at = data.find(needle)
        if at >= 0:
            data[at + len(needle) // 2] ^= 0x5A
            open(f, "wb").write(bytes(data))
            return
    raise AssertionError("needle not found")


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_flipped_byte_is_found_and_named(demo_dataset, tmp_path, fmt):
    out = str(tmp_path / f"v.{fmt}")
    pack(demo_dataset, out, PackOptions(fmt=fmt))
    clean = cli("verify", out, "--json")
    assert clean["ok"] and clean["checked"] == 24 and clean["bad"] == []
    victim = open_store(out).get(7)
    _flip_inside(out, bytes(victim.image)[100:400])
    proc = cli_process("verify", out, "--json")
    assert proc.returncode == 1
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["ok"] and result["checked"] == 24
    assert [(b["split"], b["index"], b["path"]) for b in result["bad"]] == [("train", 7, victim.path)]
    assert "CRC32 mismatch" in result["bad"][0]["reason"]


def test_decode_finds_an_image_with_a_good_crc_that_does_not_decode(tmp_path):
    path = str(tmp_path / "d.lmdb")
    w = open_writer(path, "lmdb")
    w.begin_split("train")
    good = jpeg_bytes()
    broken = good[:200] + bytes(len(good) - 200)  # header intact, scan data zeroed: CRC is computed over it
    for data in (good, broken):
        rec = Record(data, np.zeros((0, 5), np.float32), (48, 64), "x.jpg")
        rec.crc32 = rec.compute_crc()
        w.add(rec)
    w.finish({"format": "fastload", "version": 1, "names": [], "skipped": [], "splits": {"train": w.end_split()}})
    assert cli("verify", path, "--json")["ok"]
    result = cli("verify", path, "--decode", "--json", code=1)
    assert [b["index"] for b in result["bad"]] == [1]


def test_a_dataset_is_verified_through_the_cache_and_info_says_it_is_no_store(demo_dataset, tmp_path):
    proc = cli_process("verify", demo_dataset, "--duplicates", "--labels", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (
        f"(packed from the dataset {demo_dataset} into the cache)" in proc.stderr
        and "24 records checked" in proc.stderr
    )
    assert [f for f in os.listdir(tmp_path / "runs" / "stores") if f.endswith(".lmdb")]  # the cache bench and val use
    info = cli_process("info", demo_dataset)
    assert (
        info.returncode == 2
        and f"{demo_dataset}: not a store but a folder: `fastload pack {demo_dataset} -o STORE`" in (info.stderr)
    )
