"""The validation pipeline (real DALI, CPU): every image once, pixels unchanged apart from the letterbox,
boxes that map back to original pixels within 1 px, disjoint ranks, identical batches from LMDB and Zarr."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fastload.loader.geometry import letterbox, rect_batch_shapes, xyxy_to_original
from fastload.loader.val_loader import ValLoader
from fastload.pack import PackOptions, pack
from fastload.store import open_store

IMGSZ, BATCH = 128, 4


@pytest.fixture(scope="module")
def stores(demo_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("val")
    out = {}
    for fmt in ("lmdb", "zarr"):
        out[fmt] = str(folder / f"v.{fmt}")
        pack(demo_dataset, out[fmt], PackOptions(fmt=fmt))
    return out


def run(path: str, split: str = "train", **kw) -> list:
    loader = ValLoader(open_store(path, split), imgsz=IMGSZ, batch=BATCH, workers=1, **kw)
    return list(loader)


def test_every_image_exactly_once_each_epoch_with_the_last_partial_batch(stores):
    loader = ValLoader(open_store(stores["lmdb"]), imgsz=IMGSZ, batch=BATCH, workers=2)
    for _ in range(2):
        batches = list(loader)
        seen = np.concatenate([b.indices for b in batches])
        assert sorted(seen.tolist()) == list(range(19)) and len(batches) == len(loader) == 5
        assert [len(b.indices) for b in batches][-1] == 3
        for b in batches:
            assert b.images.dtype == torch.uint8 and b.images.shape[:2] == (len(b.indices), 3)
            assert b.images.shape[2] % 32 == 0 and b.images.shape[3] % 32 == 0


def test_pixels_are_the_original_resized_and_padded_with_114(stores):
    store = open_store(stores["lmdb"])
    for b in run(stores["lmdb"]):
        H, W = b.images.shape[2:]
        for j, i in enumerate(b.indices):
            p = letterbox(*store.sizes[i], IMGSZ, (H, W))
            img = b.images[j].permute(1, 2, 0).numpy().astype(np.float32)
            ref = Image.open(io.BytesIO(store.get(int(i)).image)).convert("RGB").resize((p.nw, p.nh), Image.BILINEAR)
            inner = img[p.top : p.top + p.nh, p.left : p.left + p.nw]
            assert np.abs(inner - np.asarray(ref, np.float32)).mean() < 4
            outside = np.ones((H, W), bool)
            outside[p.top : p.top + p.nh, p.left : p.left + p.nw] = False
            assert (img[outside] == 114).all()


def test_targets_map_back_to_original_pixels_within_1px(stores):
    store = open_store(stores["lmdb"])
    checked = 0
    for b in run(stores["lmdb"]):
        H, W = b.images.shape[2:]
        t = b.targets.numpy()
        for j, i in enumerate(b.indices):
            rows = t[t[:, 0] == j]
            xyxy = np.stack(
                [
                    (rows[:, 2] - rows[:, 4] / 2) * W,
                    (rows[:, 3] - rows[:, 5] / 2) * H,
                    (rows[:, 2] + rows[:, 4] / 2) * W,
                    (rows[:, 3] + rows[:, 5] / 2) * H,
                ],
                1,
            )
            back = xyxy_to_original(xyxy, b.orig_size[j], b.ratio[j], b.pad[j])
            h0, w0 = store.sizes[i]
            lab = store.labels(int(i))
            want = np.stack(
                [
                    (lab[:, 1] - lab[:, 3] / 2) * w0,
                    (lab[:, 2] - lab[:, 4] / 2) * h0,
                    (lab[:, 1] + lab[:, 3] / 2) * w0,
                    (lab[:, 2] + lab[:, 4] / 2) * h0,
                ],
                1,
            )
            assert np.abs(back - want).max() < 1.0 and np.array_equal(rows[:, 1], lab[:, 0])
            checked += len(lab)
    assert checked > 40


def test_two_ranks_are_disjoint_and_cover_the_split(stores):
    parts = [np.concatenate([b.indices for b in run(stores["lmdb"], rank=r, world=2)]) for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and sorted(np.concatenate(parts).tolist()) == list(range(19))


def test_lmdb_and_zarr_give_identical_batches(stores):
    for a, b in zip(run(stores["lmdb"], "val"), run(stores["zarr"], "val"), strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
        assert np.array_equal(a.indices, b.indices)


def test_float_output_in_unit_range(stores):
    b = run(stores["lmdb"], "val", dtype=torch.float32)[0]
    assert b.images.dtype == torch.float32 and 0 <= b.images.min() and b.images.max() <= 1


def test_square_mode_and_letterbox_numbers_match_yolov5():
    assert letterbox(480, 640, 640, (640, 640)) == letterbox(480, 640, 640, (640, 640))
    p = letterbox(480, 640, 640, (640, 640))
    assert (p.nh, p.nw, p.top, p.left) == (480, 640, 80, 0)
    p = letterbox(1000, 500, 640, (640, 352))  # load: ceil -> (640, 320); pad (352 - 320) / 2 = 16
    assert (p.nh, p.nw, p.top, p.left) == (640, 320, 0, 16)
    p = letterbox(101, 99, 640, (672, 640))  # upscaled by load_image: ceil(101 * 640 / 101), ceil(99 * 640/101)
    assert (p.nh, p.nw) == (640, 628)
    sizes = np.array([[480, 640]] * 3 + [[640, 480]] * 3)  # (h, w)
    order, shapes = rect_batch_shapes(sizes, 640, batch=3)
    assert shapes == [(512, 672), (672, 512)]  # ceil(0.75 * 20 + 0.5) * 32 = 512; ceil(20 + 0.5) * 32 = 672
    assert sorted(order[:3].tolist()) == [0, 1, 2]


def test_spawned_workers_match_forked_ones(stores):
    store = open_store(stores["lmdb"], "val")
    forked = list(ValLoader(store, imgsz=IMGSZ, batch=BATCH, workers=1, start_method="fork"))
    spawned = list(ValLoader(store, imgsz=IMGSZ, batch=BATCH, workers=1, start_method="spawn"))
    assert all(torch.equal(a.images, b.images) for a, b in zip(forked, spawned, strict=True))


def test_a_subset_of_records_is_validated_exactly_once(stores):
    store = open_store(stores["lmdb"])
    subset = np.array([1, 4, 5, 9])
    seen = [int(i) for b in ValLoader(store, imgsz=64, batch=3, workers=1, records=subset) for i in b.indices]
    assert sorted(seen) == subset.tolist()
