"""Packing a dataset again copies the records of its unchanged inputs from the earlier store (`--reuse`, and the
output itself by default): the result equals a fresh pack record for record, and only changed inputs are read."""

import os
import shutil

import numpy as np
import pytest
from conftest import cli, jpeg_bytes, write

from fastload.pack import PackOptions, pack
from fastload.store import open_store, read_meta


def dataset_with_every_kind(demo_dataset, root) -> str:
    """The demo dataset plus a PNG (converted: fixed), duplicate label rows (fixed), an image without a label file,
    one with an empty label file and one with a polygon row."""
    data = str(root / "data")
    shutil.copytree(demo_dataset, data)
    from conftest import image_bytes

    extra = {
        "png": (image_bytes("PNG"), "0 0.5 0.5 0.2 0.2\n"),
        "dup": (jpeg_bytes(colour=(10, 200, 10)), "1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"),
        "nolabel": (jpeg_bytes(colour=(10, 10, 200)), None),
        "empty": (jpeg_bytes(colour=(90, 90, 90)), ""),
        "poly": (jpeg_bytes(colour=(200, 200, 10)), "2 0.1 0.1 0.9 0.2 0.5 0.8\n"),
    }
    for name, (image, label) in extra.items():
        write(os.path.join(data, "images", "train", f"{name}.{'png' if name == 'png' else 'jpg'}"), image)
        if label is not None:
            write(os.path.join(data, "labels", "train", f"{name}.txt"), label)
    return data


def same_records(a: str, b: str) -> None:
    """Two stores hold the same splits, records (bytes, boxes, size, path, CRC, polygons) and stamps."""
    meta_a, meta_b = read_meta(a)[1], read_meta(b)[1]
    for key in ("splits", "names", "skipped", "fixed", "fixed_count", "fingerprint"):
        assert meta_a[key] == meta_b[key], key
    for split in meta_a["splits"]:
        sa, sb = open_store(a, split), open_store(b, split)
        assert len(sa) == len(sb)
        for i in range(len(sa)):
            ra, rb = sa.get(i), sb.get(i)
            assert bytes(ra.image) == bytes(rb.image) and ra.path == rb.path and ra.size == rb.size
            assert ra.crc32 == rb.crc32 and np.array_equal(ra.boxes, rb.boxes)
            assert (ra.segments is None) == (rb.segments is None)
            for pa, pb in zip(ra.segments or [], rb.segments or [], strict=True):
                assert np.array_equal(pa, pb)
        assert np.array_equal(sa.stamps(), sb.stamps())


def test_a_pack_again_copies_unchanged_records_and_equals_a_fresh_pack(demo_dataset, tmp_path):
    data = dataset_with_every_kind(demo_dataset, tmp_path)
    first = str(tmp_path / "first.lmdb")
    meta = pack(data, first, PackOptions(workers=2))
    train = open_store(first, "train")
    stamps = train.stamps()
    flags = {train.path_of(i): int(stamps[i, 4]) for i in range(len(train))}
    assert flags["images/train/png.png"] == 1 and flags["images/train/dup.jpg"] == 1  # fixed
    assert flags["images/train/nolabel.jpg"] == 2 and flags["images/train/empty.jpg"] == 4
    assert stamps[0, 0] == os.path.getsize(os.path.join(data, train.path_of(0))) and (stamps[:, 1] > 0).all()
    assert meta["splits"]["train"]["missing_labels"] == 1 and meta["splits"]["train"]["empty_labels"] == 1

    labels, images = os.path.join(data, "labels", "train"), os.path.join(data, "images", "train")
    names = sorted(n[:-4] for n in os.listdir(labels) if n[:-4] not in ("png", "dup", "empty", "poly"))
    with open(os.path.join(labels, names[0] + ".txt"), "a") as f:  # a label changed
        f.write("0 0.5 0.5 0.1 0.1\n")
    write(os.path.join(images, names[1] + ".jpg"), jpeg_bytes(colour=(1, 2, 3)))  # an image replaced
    os.remove(os.path.join(images, names[2] + ".jpg"))  # one removed
    write(os.path.join(images, "new.jpg"), jpeg_bytes(colour=(4, 5, 6)))  # one added
    write(os.path.join(labels, "new.txt"), "0 0.4 0.4 0.2 0.2\n")
    st = os.stat(os.path.join(images, names[3] + ".jpg"))
    os.utime(os.path.join(images, names[3] + ".jpg"), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    write(os.path.join(labels, names[4] + ".txt"), "0 0.5\n")  # now bad: skipped
    os.remove(os.path.join(labels, names[5] + ".txt"))  # now without labels

    again, fresh = str(tmp_path / "again.lmdb"), str(tmp_path / "fresh.lmdb")
    meta = pack(data, again, PackOptions(workers=2, reuse=first))
    pack(data, fresh, PackOptions(workers=2))
    same_records(again, fresh)
    count = sum(s["count"] for s in meta["splits"].values())
    assert meta["pack"]["reused"] == {"from": first, "records": count - 5}  # changed, added, touched, unlabelled
    assert meta["skipped"][0]["path"] == f"labels/train/{names[4]}.txt"
    assert meta["splits"]["train"]["missing_labels"] == 2 and meta["fixed_count"] == 2


def test_a_damaged_record_of_the_earlier_store_is_packed_again(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    earlier = str(tmp_path / "earlier.zarr")
    pack(data, earlier, PackOptions(fmt="zarr"))
    shard = os.path.join(earlier, "train", "images", "c", "0")
    with open(shard, "r+b") as f:  # a byte inside the first train image
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    again, fresh = str(tmp_path / "again.lmdb"), str(tmp_path / "fresh.lmdb")
    meta = pack(data, again, PackOptions(reuse=earlier))
    pack(data, fresh, PackOptions())
    same_records(again, fresh)
    assert meta["pack"]["reused"]["records"] == 24 - 1


def test_other_options_or_an_older_store_reuse_nothing(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    earlier = str(tmp_path / "earlier.lmdb")
    pack(data, earlier, PackOptions())
    shrunk = pack(data, str(tmp_path / "shrunk.lmdb"), PackOptions(max_side=64, reuse=earlier))
    assert shrunk["pack"]["reused"]["records"] == 0 and shrunk["fixed_count"] == 24  # re-encoded, not copied
    converted = str(tmp_path / "converted.zarr")
    pack(earlier, converted, PackOptions(fmt="zarr"))  # a conversion keeps the stamps
    assert np.array_equal(open_store(converted, "val").stamps(), open_store(earlier, "val").stamps())
    assert pack(data, str(tmp_path / "z.lmdb"), PackOptions(reuse=converted))["pack"]["reused"]["records"] == 24


def test_pack_cli_reuses_its_output_unless_told(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    out = str(tmp_path / "out.lmdb")
    first = cli("pack", data, "-o", out, "--workers", "1", "--json")
    assert "reused" not in first["pack"]
    again = cli("pack", data, "-o", out, "--workers", "1", "--json")  # the output is an earlier pack of it
    assert again["pack"]["reused"] == {"from": out, "records": 24} and again["fingerprint"] == first["fingerprint"]
    assert "reused" not in cli("pack", data, "-o", out, "--no-reuse", "--json")["pack"]
    other = cli("pack", data, "-o", str(tmp_path / "other.lmdb"), "--reuse", out, "--json")
    assert other["pack"]["reused"]["records"] == 24
    cli("pack", data, "-o", str(tmp_path / "x.lmdb"), "--reuse", str(tmp_path / "none.lmdb"), code=2)


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_a_store_without_stamps_reads_as_before(demo_dataset, tmp_path, fmt):
    """A record added without its inputs (as by a store packed before stamps were kept) leaves the column out."""
    from fastload.store import open_writer

    source = open_store(pack(demo_dataset, str(tmp_path / "a.lmdb"), PackOptions()) and str(tmp_path / "a.lmdb"))
    out = str(tmp_path / f"b.{fmt}")
    writer = open_writer(out, fmt)
    writer.begin_split("train")
    for i in range(3):
        writer.add(source.get(i), None if i == 1 else (1, 2, 3, 4, 0))
    split = writer.end_split()
    writer.finish({**source.meta, "splits": {"train": split}})
    store = open_store(out, "train")
    assert store.stamps() is None and len(store) == 3 and store.get(2).path == source.get(2).path
