"""A record damaged after packing stops the loaders with one line naming it (DALI's own error names no image): the
training and validation loaders on LMDB and Zarr, a damaged CRC or an image that no longer decodes; `fastload train`
keeps its last.pt and says so; `fastload pack STORE -o NEW` copies the rest."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, cli

from fastload.errors import BadRecord
from fastload.loader.train_loader import TrainLoader
from fastload.loader.val_loader import ValLoader
from fastload.store import open_store, open_writer, read_meta
from fastload.store.record import Record
from yolo.train import TrainConfig, train


def damaged_copy(src: str, out: str, fmt: str, split: str, victim: int, keep_crc: bool) -> str:
    """`src` rewritten record by record into `out`, with record `victim` of `split` cut to a third of its bytes.
    keep_crc: the stored CRC32 stays the original's (damage after packing); else it matches the cut bytes (an
    image the packer accepted that the decoder then refuses)."""
    _, meta = read_meta(src)
    writer = open_writer(out, fmt)
    splits = {}
    for name in meta["splits"]:
        store = open_store(src, name)
        writer.begin_split(name)
        for i in range(len(store)):
            rec = store.get(i)
            if name == split and i == victim:
                image = bytes(rec.image)
                rec = Record(image[: len(image) // 3], rec.boxes, rec.size, rec.path, rec.crc32)
                rec.crc32 = rec.crc32 if keep_crc else rec.compute_crc()
            writer.add(rec)
        splits[name] = writer.end_split()
    writer.finish({**meta, "splits": splits})
    return out


def one_pass(loader) -> int:
    return sum(len(b.images) for b in loader)


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_the_training_loader_names_a_record_damaged_after_packing(demo_store, tmp_path, fmt):
    path = damaged_copy(demo_store, str(tmp_path / f"d.{fmt}"), fmt, "train", 5, keep_crc=True)
    victim = open_store(path).path_of(5)
    loader = TrainLoader(open_store(path), imgsz=64, batch=4, workers=1, seed=2)
    with pytest.raises(BadRecord) as error:
        one_pass(loader)
    message = str(error.value)
    assert message.startswith(f"{path}: record train[5] ({victim}): CRC32 mismatch (stored ")
    assert message.endswith(
        f"`fastload verify {path}` lists every bad record, `fastload pack {path} -o NEW` copies the rest"
    )
    assert "\n" not in message


def test_an_image_that_no_longer_decodes_is_found_by_decoding(demo_store, tmp_path):
    """The CRC matches the cut bytes: only a decode finds the record, and the message asks for verify --decode (the
    packer's conversion checks CRCs, so it is not offered)."""
    path = damaged_copy(demo_store, str(tmp_path / "d.lmdb"), "lmdb", "train", 11, keep_crc=False)
    assert cli("verify", path, "--json")["ok"]  # the CRCs are all right
    loader = TrainLoader(open_store(path).single_class(), imgsz=64, batch=4, workers=1)  # a view: CRCs as packed
    with pytest.raises(BadRecord) as error:
        one_pass(loader)
    message = str(error.value)
    assert message.startswith(f"{path}: record train[11] ({open_store(path).path_of(11)}): ")
    assert message.endswith(f"`fastload verify {path} --decode` lists every bad record") and "CRC32" not in message


def test_the_validation_loader_names_its_record_and_a_sound_store_loads(demo_store, tmp_path):
    path = damaged_copy(demo_store, str(tmp_path / "d.zarr"), "zarr", "val", 2, keep_crc=True)
    with pytest.raises(BadRecord, match=r"record val\[2\] \("):
        one_pass(ValLoader(open_store(path, "val"), imgsz=64, batch=2, workers=1))
    assert one_pass(ValLoader(open_store(demo_store, "val"), imgsz=64, batch=2, workers=1)) == 5
    assert one_pass(TrainLoader(open_store(path), imgsz=64, batch=4, workers=1)) == 19  # train is whole


def test_train_stops_with_one_line_and_keeps_its_last_checkpoint(demo_store, tmp_path):
    """A run's store is damaged between two epochs: the resumed run stops at the damaged record with exit 2 and one
    line naming it and how far last.pt got, which is left as it was; the store's good records convert."""
    path = damaged_copy(demo_store, str(tmp_path / "s.lmdb"), "lmdb", "val", -1, keep_crc=True)  # all sound, for now
    first = train(TrainConfig(data=path, project=str(tmp_path), name="r", model="n", epochs=1, imgsz=64, batch=8,
                              workers=1), progress=False)  # fmt: skip
    last = first["last"]
    before = open(last, "rb").read()
    damaged_copy(path, path, "lmdb", "train", 3, keep_crc=True)  # the run's store, damaged since (in this process too)
    proc = subprocess.run([sys.executable, "-m", "fastload", "train", "--resume", last, "--epochs", "2"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: {path}: record train[3] (") and "CRC32 mismatch" in line
    assert line.endswith(f"; {last} keeps 1 trained epoch (--resume it)")
    assert open(last, "rb").read() == before
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    report = cli("pack", path, "-o", str(tmp_path / "fixed.zarr"), "--json")  # format from the name
    assert report["format"] == "zarr" and report["splits"]["train"]["count"] == 18
    skipped = report["skipped"][-1]
    assert skipped["path"] == open_store(path).path_of(3) and skipped["reason"].startswith("in the source store: CRC32")
    assert cli("verify", str(tmp_path / "fixed.zarr"), "--json")["ok"]
    assert np.array_equal(open_store(str(tmp_path / "fixed.zarr")).labels(3), open_store(path).labels(4))
