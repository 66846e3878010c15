"""The Store interface over LMDB and Zarr: round trip, sharding, lazy per-process opening, Zarr shards."""

import multiprocessing
import os
import pickle

import numpy as np
import pytest

from fastload.errors import FastloadError
from fastload.store import open_store, open_writer, shuffled_order
from fastload.store.record import Record
from fastload.store.zarr_store import ZarrWriter

META = {"format": "fastload", "version": 1, "names": ["a", "b", "c"], "skipped": [], "fingerprint": "x"}


def make_records(n: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        boxes = rng.random((i % 4, 5)).astype(np.float32)
        rec = Record(rng.bytes(int(rng.integers(200, 5000))), boxes, (int(rng.integers(10, 99)), 50 + i), f"im/{i}.jpg")
        rec.crc32 = rec.compute_crc()
        recs.append(rec)
    return recs


def write_store(path: str, fmt: str, splits: dict[str, list[Record]], writer=None) -> str:
    w = writer or open_writer(path, fmt)
    counts = {}
    for name, recs in splits.items():
        w.begin_split(name)
        for r in recs:
            w.add(r)
        counts[name] = w.end_split()
    w.finish({**META, "splits": counts})
    return path


@pytest.fixture(params=["lmdb", "zarr"])
def store_path(request, tmp_path):
    recs = {"train": make_records(40), "val": make_records(7, seed=1)}
    return write_store(str(tmp_path / f"s.{request.param}"), request.param, recs)


def same(a: Record, b: Record) -> bool:
    return (
        bytes(a.image) == bytes(b.image)
        and np.array_equal(a.boxes, b.boxes)
        and a.size == b.size
        and a.path == b.path
        and a.crc32 == b.crc32
    )


def test_round_trip_every_field(store_path):
    train, val = open_store(store_path), open_store(store_path, "val")
    assert (len(train), len(val)) == (40, 7) and train.split == "train" and train.names == ["a", "b", "c"]
    for i, rec in enumerate(make_records(40)):
        got = train.get(i)
        assert same(got, rec)
        assert np.array_equal(train.labels(i), rec.boxes) and tuple(train.sizes[i]) == rec.size
    assert same(val[6], make_records(7, seed=1)[6]) and same(train[-1], make_records(40)[-1])
    with pytest.raises(IndexError):
        train.get(40)


def test_lmdb_image_is_a_view_not_a_copy(tmp_path):
    path = write_store(str(tmp_path / "s.lmdb"), "lmdb", {"train": make_records(3)})
    img = open_store(path).get(1).image
    assert isinstance(img, memoryview) and img.readonly


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_everything(store_path, world):
    store = open_store(store_path)
    seen = []
    for rank in range(world):
        shard = store.shard(rank, world)
        seen += [shard.get(i).path for i in range(len(shard))]
    assert sorted(seen) == sorted(store.get(i).path for i in range(len(store)))
    assert len(set(seen)) == len(seen)


def _read_paths(store) -> list[str]:
    return [store.get(i).path for i in range(len(store))]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_store_opened_in_parent_reads_in_child_processes(store_path, method):
    store = open_store(store_path)
    expected = _read_paths(store)  # the parent has its handles open before the children start
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(_read_paths, [store, pickle.loads(pickle.dumps(store))])
    assert results == [expected, expected]
    assert _read_paths(store) == expected  # and the parent still reads


def test_zarr_image_straddling_shards_and_few_objects(tmp_path):
    recs = make_records(60)
    path = str(tmp_path / "s.zarr")
    write_store(path, "zarr", {"train": recs}, ZarrWriter(path, shard_bytes=16 << 10))
    store = open_store(path)
    assert all(same(store.get(i), r) for i, r in enumerate(recs))
    groups = store.read_groups()
    assert [i for g in groups for i in g] == list(range(60)) and len(groups) > 3
    shard_files = os.listdir(os.path.join(path, "train", "images", "c"))
    total = sum(len(r.image) for r in recs)
    assert len(shard_files) == -(-total // (16 << 10))  # one object per shard, not per image or chunk


def test_shuffled_order_is_a_permutation_grouped_by_shard(tmp_path):
    path = str(tmp_path / "s.zarr")
    write_store(path, "zarr", {"train": make_records(60)}, ZarrWriter(path, shard_bytes=16 << 10))
    store = open_store(path)
    order = shuffled_order(store, seed=1)
    assert sorted(order.tolist()) == list(range(60)) and order.tolist() != list(range(60))
    group_of = {i: k for k, g in enumerate(store.read_groups()) for i in g}
    switches = sum(group_of[a] != group_of[b] for a, b in zip(order[:-1], order[1:], strict=True))
    assert switches == len(store.read_groups()) - 1  # each shard is read in one run
    assert np.array_equal(order, shuffled_order(store, seed=1))


def test_zarr_through_an_fsspec_url():
    url = "memory://fastload-test/s.zarr"
    recs = make_records(9)
    write_store(url, "zarr", {"train": recs})
    store = open_store(url)
    assert all(same(store.get(i), r) for i, r in enumerate(recs))


def test_not_a_store_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.lmdb"
    junk.write_bytes(b"not lmdb at all" * 100)
    (tmp_path / "data.yaml").write_text("train: images/train\n")
    for path, words in [
        (str(tmp_path / "nope"), "no such store"),
        (str(junk), "not a fastload store"),
        (str(tmp_path), "not a store but a folder: `fastload pack "),
        (str(tmp_path / "data.yaml"), "not a store but a dataset file"),
    ]:
        with pytest.raises(FastloadError, match=words):
            open_store(path)


def test_unknown_split_is_a_clear_error(store_path):
    with pytest.raises(FastloadError, match="no split 'test'"):
        open_store(store_path, "test")
