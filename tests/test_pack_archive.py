"""A dataset archive (.zip, .tar.gz, …) packs as the folder it holds: the same records, reuse of unchanged members
on a pack again, the cache keyed on the archive, damaged members skipped with a line each, and no unpacked copy
left behind."""

import io
import os
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from conftest import cli, cli_process, jpeg_bytes, write

from fastload.pack import PackOptions, pack
from fastload.pack.cache import ensure_store, release
from fastload.store import open_store, read_meta


def zip_folder(folder: str, out: str, top: str | None = "data", extra: dict | None = None) -> str:
    """`folder`'s files into the zip `out`, under `top/` (or at its root), plus `extra` {name: bytes} members."""
    with zipfile.ZipFile(out, "w") as z:
        for dirpath, _, files in sorted(os.walk(folder)):
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, folder)
                z.write(path, f"{top}/{rel}" if top else rel)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out


def archived(folder: str, out: str) -> str:
    """`folder` under demo/ in the archive `out`, of the kind its name says (.zip, .tar, .tar.gz, .tar.xz)."""
    if out.endswith(".zip"):
        return zip_folder(folder, out, top="demo")
    with tarfile.open(out, "w:" + out.split(".tar")[1].lstrip(".")) as t:
        t.add(folder, "demo")
    return out


def records(store: str) -> dict:
    """{split: [(path, image bytes, boxes)]} of a store."""
    out = {}
    for split in read_meta(store)[1]["splits"]:
        s = open_store(store, split)
        out[split] = [(r.path, bytes(r.image), r.boxes.tolist()) for r in (s.get(i) for i in range(len(s)))]
    return out


def leftovers(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if ".unpacking-" in n or ".partial-" in n]


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.xz"])
def test_an_archive_packs_as_the_folder_it_holds(demo_dataset, tmp_path, kind):
    folder = str(tmp_path / "folder.lmdb")
    pack(demo_dataset, folder, PackOptions())
    archive = archived(demo_dataset, str(tmp_path / f"demo.{kind}"))
    meta = cli("pack", archive, "-o", str(tmp_path / "a.lmdb"), "--json")
    assert records(str(tmp_path / "a.lmdb")) == records(folder)
    assert meta["pack"]["source"] == archive and meta["pack"]["archive"] == kind[:3] and meta["skipped"] == []
    assert meta["pack"]["source_kind"] == "data.yaml"  # the data.yaml in the archive's one top folder
    assert leftovers(str(tmp_path)) == []


def test_a_roboflow_zip_with_its_data_yaml_at_the_root(tmp_path):
    data = tmp_path / "rf"
    for split in ("train", "valid"):
        for i in range(2):
            write(str(data / split / "images" / f"{split}{i}.jpg"), jpeg_bytes(colour=(40 * i, 90, 9)))
            write(str(data / split / "labels" / f"{split}{i}.txt"), "1 0.5 0.5 0.3 0.3\n")
    write(str(data / "data.yaml"), "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['a', 'b']\n")
    junk = {"__MACOSX/._train0.jpg": b"\0\5\26\7", "train/images/._x.jpg": b"\0\5\26\7"}  # macOS's resource forks
    archive = zip_folder(str(data), str(tmp_path / "rf.zip"), top=None, extra=junk)
    meta = cli("pack", archive, "-o", str(tmp_path / "rf.lmdb"), "--workers", "1", "--json")  # read in this process
    assert {k: v["count"] for k, v in meta["splits"].items()} == {"train": 2, "val": 2}
    assert meta["names"] == ["a", "b"] and meta["skipped"] == []
    assert open_store(str(tmp_path / "rf.lmdb"), "val").get(0).path == "valid/images/valid0.jpg"


def test_a_pack_again_copies_the_unchanged_members(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    out = str(tmp_path / "s.lmdb")
    cli("pack", zip_folder(data, str(tmp_path / "d.zip")), "-o", out)
    label = os.path.join(data, "labels", "train", sorted(os.listdir(os.path.join(data, "labels", "train")))[0])
    write(label, "0 0.5 0.5 0.2 0.2\n")
    os.utime(label, (os.path.getmtime(label) + 10,) * 2)  # a zip keeps times to 2 s
    os.remove(str(tmp_path / "d.zip"))
    meta = cli("pack", zip_folder(data, str(tmp_path / "d.zip")), "-o", out, "--json")
    total = sum(s["count"] for s in meta["splits"].values())
    assert meta["pack"]["reused"]["records"] == total - 1
    first = open_store(out, "train").get(0)
    assert np.allclose(first.boxes, [[0, 0.5, 0.5, 0.2, 0.2]])


def test_damaged_members_are_skipped_and_the_rest_packed(demo_dataset, tmp_path):
    archive = zip_folder(demo_dataset, str(tmp_path / "d.zip"))
    with zipfile.ZipFile(archive) as z:
        image = next(m for m in z.infolist() if m.filename.endswith(".jpg"))  # read in place by a worker
        label = next(m for m in z.infolist() if m.filename.endswith(".txt") and "val" in m.filename)  # unpacked
    blob = bytearray(open(archive, "rb").read())
    for victim, at in ((image, 100), (label, 2)):
        start = victim.header_offset + 30 + len(victim.filename.encode()) + len(victim.extra)
        blob[start + at] ^= 0x01  # stored data: its CRC no longer matches
    open(archive, "wb").write(bytes(blob))
    meta = cli("pack", archive, "-o", str(tmp_path / "s.lmdb"), "--json")
    reasons = {s["path"]: s["reason"] for s in meta["skipped"]}
    labelled = label.filename[len("data/") :].replace("labels/", "images/").replace(".txt", ".jpg")
    assert set(reasons) == {image.filename[len("data/") :], f"{archive}/{label.filename}", labelled}
    assert reasons[image.filename[len("data/") :]].startswith(f"cannot read it from {archive}: Bad CRC-32")
    assert reasons[f"{archive}/{label.filename}"].startswith("not unpacked: Bad CRC-32")
    assert reasons[labelled] == f"its label file {archive}/{label.filename} was damaged in the archive"
    assert sum(s["count"] for s in meta["splits"].values()) == 22 and leftovers(str(tmp_path)) == []
    assert meta["splits"]["val"]["missing_labels"] == 0  # not packed as an image without objects


def test_a_truncated_tar_packs_what_came_before(demo_dataset, tmp_path):
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w:gz") as t:
        for sub in ("labels", "images"):  # no data.yaml: the images/ folder is the dataset
            t.add(os.path.join(demo_dataset, sub), f"demo/{sub}")
    archive = str(tmp_path / "cut.tar.gz")
    write(archive, whole.getvalue()[: len(whole.getvalue()) * 2 // 3])
    meta = cli("pack", archive, "-o", str(tmp_path / "s.lmdb"), "--json")
    assert meta["skipped"][0]["path"] == archive and "the rest of it is not unpacked" in meta["skipped"][0]["reason"]
    for split in meta["splits"]:  # every record whole: the member cut short was not kept
        store = open_store(str(tmp_path / "s.lmdb"), split)
        assert all(store.get(i).crc32 == store.get(i).compute_crc() for i in range(len(store)))
    assert 0 < sum(s["count"] for s in meta["splits"].values()) < 24

    cut = io.BytesIO()  # with its data.yaml, whose val folder is cut off
    with tarfile.open(fileobj=cut, mode="w:gz") as t:
        t.add(demo_dataset, "demo")
    write(archive, cut.getvalue()[: len(cut.getvalue()) // 2])
    got = cli_process("pack", archive, "-o", str(tmp_path / "t.lmdb"))
    assert got.returncode == 2 and f"{archive}/demo/data.yaml: val path" in got.stderr
    assert f"{archive}: damaged after" in got.stderr and len(got.stderr.strip().splitlines()) == 1


def test_members_outside_the_archive_are_not_unpacked(tmp_path):
    archive = str(tmp_path / "evil.tar")
    with tarfile.open(archive, "w") as t:
        for name, data in (("images/a.jpg", jpeg_bytes()), ("../escaped.jpg", jpeg_bytes()), ("/abs.jpg", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    meta = cli("pack", archive, "-o", str(tmp_path / "out" / "s.lmdb"), "--json")
    assert meta["splits"]["train"]["count"] == 1
    assert [s["path"] for s in meta["skipped"]] == [f"{archive}/../escaped.jpg"]  # /abs.jpg: unpacked as abs.jpg
    assert not os.path.exists(tmp_path / "out" / "escaped.jpg") and not os.path.exists("/abs.jpg")


def test_bad_archives_are_one_line_errors_naming_them(tmp_path):
    fake = write(str(tmp_path / "fake.zip"), b"not a zip at all")
    got = cli_process("pack", fake, "-o", str(tmp_path / "s.lmdb"))
    assert got.returncode == 2 and got.stderr.strip().splitlines() == [f"Error: {fake}: not a readable zip archive "
                                                                         "(File is not a zip file)"]  # fmt: skip
    empty = zip_folder(str(tmp_path / "nothing"), str(tmp_path / "empty.zip"), extra={"notes/readme.txt": b"hi"})
    got = cli_process("pack", empty, "-o", str(tmp_path / "s.lmdb"))
    assert got.returncode == 2 and f"{empty}/notes: empty dataset" in got.stderr and "unpacking" not in got.stderr
    assert leftovers(str(tmp_path)) == []


def test_the_cache_keys_an_archive_by_its_stamp_and_reuses_its_records(demo_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(demo_dataset, data)
    archive = zip_folder(data, str(tmp_path / "d.zip"))
    cache = str(tmp_path / "stores")
    path, report = ensure_store(archive, cache)
    assert os.path.basename(path).startswith("d-") and report is not None
    assert ensure_store(archive, cache) == (path, None)  # found by its stamp: not unpacked again
    os.utime(archive, (os.path.getmtime(archive) + 5,) * 2)
    release(path)
    again, report = ensure_store(archive, cache)
    assert again != path and report["pack"]["reused"]["records"] == 24 and report["pack"]["pruned"] == [path]
    assert not os.path.exists(path)
    pack(data, str(tmp_path / "folder.lmdb"), PackOptions())
    assert records(again) == records(str(tmp_path / "folder.lmdb"))


def test_an_archive_larger_than_the_free_space_is_refused_before_unpacking(tmp_path):
    from fastload.errors import JobFailed
    from fastload.pack.archive import check_space

    free = shutil.disk_usage(tmp_path).free
    check_space(str(tmp_path), free // 2, "big.zip")
    with pytest.raises(JobFailed, match=r"^big.zip: unpacking it takes .* GB free: unpack it where there is room"):
        check_space(str(tmp_path), free + 10**12, "big.zip")


def test_the_cache_key_of_an_archive_takes_classes_without_their_spaces(demo_dataset, tmp_path):
    cache = str(tmp_path / "stores")
    archive = zip_folder(demo_dataset, str(tmp_path / "d.zip"))
    b = ensure_store(archive, cache, classes="circle,shape=rectangle+triangle")[0]
    assert ensure_store(archive, cache, classes="circle , shape= rectangle + triangle")[0] == b
    assert read_meta(b)[1]["names"] == ["circle", "shape"]


def in_parts(demo_dataset: str, tmp_path) -> list[str]:
    """The dataset as VOC's and COCO's come: its images in a zip, its labels and data.yaml in a .tar.gz."""
    parts = []
    for k, sub in enumerate(("images", "labels")):
        parts.append(str(tmp_path / f"part{k}.tar.gz" if k else tmp_path / f"part{k}.zip"))
        if k:
            with tarfile.open(parts[-1], "w:gz") as t:
                t.add(os.path.join(demo_dataset, sub), f"demo/{sub}")
                t.add(os.path.join(demo_dataset, "data.yaml"), "demo/data.yaml")
        else:
            zip_folder(os.path.join(demo_dataset, sub), parts[-1], top=f"demo/{sub}")
    return parts


def test_several_archives_pack_as_the_folder_they_make_together(demo_dataset, demo_store, tmp_path):
    parts = in_parts(demo_dataset, tmp_path)
    out = str(tmp_path / "s.lmdb")
    meta = cli("pack", *parts, "-o", out, "--json")
    assert records(out) == records(demo_store) and meta["pack"]["archive"] == "zip+tar"
    assert meta["pack"]["source"] == parts and leftovers(str(tmp_path)) == []
    again = cli("pack", *parts, "-o", out, "--json")  # the same archives: every record copied
    assert again["pack"]["reused"]["records"] == 24
    got = cli_process("pack", parts[0], demo_dataset, "-o", str(tmp_path / "t.lmdb"))
    assert got.returncode == 2 and f"{demo_dataset}: not an archive" in got.stderr


def test_an_archive_url_is_fetched_beside_the_store_and_packed(demo_dataset, demo_store, tmp_path):
    url = "file://" + zip_folder(demo_dataset, str(tmp_path / "d.zip"))
    out = str(tmp_path / "out" / "s.lmdb")
    meta = cli("pack", url, "-o", out, "--json")
    assert records(out) == records(demo_store) and meta["pack"]["source"] == url
    assert leftovers(str(tmp_path / "out")) == []
    assert cli("pack", url, "-o", out, "--json")["pack"]["reused"]["records"] == 24  # its members' times kept
    cache = str(tmp_path / "stores")
    path, report = ensure_store(url, cache)
    assert report is not None and ensure_store(url, cache) == (path, None)  # fetched once
    got = cli_process("pack", url + ".gone.zip", "-o", str(tmp_path / "t.lmdb"))
    assert got.returncode == 1 and f"cannot fetch {url}.gone.zip" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 2  # what it fetches, then the one-line error


def test_an_unpacking_folder_left_by_a_killed_pack_is_removed_by_the_next(demo_dataset, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = str(tmp_path / "s.lmdb")
    stale = f"{out}.unpacking-{int(dead.stdout)}"  # a pid that no longer runs
    write(os.path.join(stale, "demo", "images", "train", "x.jpg"), jpeg_bytes())
    cli("pack", zip_folder(demo_dataset, str(tmp_path / "d.zip")), "-o", out)
    assert not os.path.exists(stale) and leftovers(str(tmp_path)) == []


def test_a_truncated_plain_tar_reads_whole_images_in_place_and_skips_the_one_cut(demo_dataset, tmp_path):
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as t:  # uncompressed: its images are read in place
        for sub in ("labels", "images"):
            t.add(os.path.join(demo_dataset, sub), f"demo/{sub}")
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(whole.getvalue())).getmembers()}
    victim = next(m for name, m in sorted(members.items()) if name.startswith("demo/images/val/"))
    archive = str(tmp_path / "cut.tar")
    write(archive, whole.getvalue()[: victim.offset_data + victim.size // 2])  # cut inside the victim's bytes
    meta = cli("pack", archive, "-o", str(tmp_path / "s.lmdb"), "--json")
    reasons = {s["path"]: s["reason"] for s in meta["skipped"]}
    assert "cut short" in reasons[victim.name[len("demo/") :]]
    for split in meta["splits"]:
        store = open_store(str(tmp_path / "s.lmdb"), split)
        for i in range(len(store)):  # the byte-for-byte JPEGs as they are in the dataset
            assert bytes(store.image(i)) == open(os.path.join(demo_dataset, store.path_of(i)), "rb").read()


def test_a_folder_of_archives_not_unpacked_says_to_pack_them(demo_dataset, tmp_path):
    folder = tmp_path / "VOC"
    folder.mkdir()
    for name in ("VOCtrainval.tar", "VOCtest.tar"):
        with tarfile.open(folder / name, "w") as t:
            t.add(os.path.join(demo_dataset, "data.yaml"), "x/data.yaml")
    got = cli_process("pack", str(folder), "-o", str(tmp_path / "s.lmdb"))
    assert got.returncode == 2 and got.stderr.strip() == (
        f"Error: {folder}: no images, but 2 archive(s) not unpacked: pack them as they are (fastload pack "
        f"{folder}/VOCtest.tar {folder}/VOCtrainval.tar -o STORE)"
    )


def shuffled_tar(folder: str, out: str, seed: int = 0) -> list[str]:
    """`folder`'s files into the tar.gz `out` under demo/, in a shuffled order (as `tar` lists a folder: its
    directory order, not sorted); the member names in that order."""
    files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    order = [files[k] for k in np.random.default_rng(seed).permutation(len(files))]
    with tarfile.open(out, "w:gz") as t:
        for rel in order:
            t.add(os.path.join(folder, rel), f"demo/{rel}")
    return order


@pytest.mark.parametrize("dedupe", [False, True])
def test_a_compressed_tar_packs_its_largest_split_as_it_streams_without_its_images_on_disk(
    demo_dataset, tmp_path, dedupe
):
    archive = str(tmp_path / "d.tar.gz")
    order = shuffled_tar(demo_dataset, archive)
    args = ["--dedupe"] * dedupe
    meta = cli("pack", archive, "-o", str(tmp_path / "t.lmdb"), *args, "--json")
    folder = str(tmp_path / "folder.lmdb")
    cli("pack", demo_dataset, "-o", folder, *args)
    got, want = records(str(tmp_path / "t.lmdb")), records(folder)
    assert sorted(got["train"]) == want["train"] and got["val"] == want["val"]  # the same records
    in_archive = [rel for rel in order if rel.startswith("images/train/")]
    assert [path for path, *_ in got["train"]] == in_archive  # train: in the archive's order, as it streamed
    size = {split: sum(len(image) for _, image, _ in recs) for split, recs in want.items()}
    labels = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(demo_dataset) for f in fs
                 if not f.endswith(".jpg"))  # fmt: skip
    # the unpacking folder held the labels and val's images (in 4 kB blocks), never train's
    assert size["val"] <= meta["pack"]["unpacked_mb"] * 1e6 < size["val"] + labels + 4096 * len(order)
    assert meta["pack"]["unpacked_mb"] * 1e6 < size["train"] and meta["skipped"] == []
    assert leftovers(str(tmp_path)) == []
    again = cli("pack", archive, "-o", str(tmp_path / "t.lmdb"), *args, "--json")  # its members' times kept
    assert again["pack"]["reused"]["records"] == 24 and records(str(tmp_path / "t.lmdb")) == got


def test_a_compressed_tars_member_is_read_again_from_its_start_when_asked_alone(demo_dataset, tmp_path):
    from fastload.errors import BadInput
    from fastload.pack.archive import read_member, unpacked

    archive = str(tmp_path / "d.tar.xz")
    with tarfile.open(archive, "w:xz") as t:
        t.add(demo_dataset, "demo")
    with unpacked([archive], str(tmp_path / "s.lmdb"), quiet=True) as got:
        path = os.path.join(
            got.root, "images", "val", sorted(os.listdir(os.path.join(demo_dataset, "images", "val")))[1]
        )
        assert os.path.getsize(path) > 0 and os.lstat(path).st_blocks == 0  # a stand-in: no disk
        rel = os.path.relpath(path, got.root)
        assert read_member(got.members[path]) == open(os.path.join(demo_dataset, rel), "rb").read()
        local, (_, index), name = got.members[path]
        with pytest.raises(BadInput, match=f"^cannot read it from {name}: the archive ends before it"):
            read_member((local, ("stream", 10**6), name))


def test_pack_dry_run_tile_reads_an_archives_image_sizes_from_their_headers(demo_dataset, tmp_path):
    folder = cli("pack", demo_dataset, "-o", str(tmp_path / "f.lmdb"), "--dry-run", "--tile", "256", "--json")
    for kind in ("zip", "tar", "tar.gz"):
        archive = archived(demo_dataset, str(tmp_path / f"d.{kind}"))
        got = cli("pack", archive, "-o", str(tmp_path / "a.lmdb"), "--dry-run", "--tile", "256", "--json")
        for split, s in folder["splits"].items():
            assert {k: got["splits"][split][k] for k in ("tiles", "cut", "unreadable")} == {
                k: s[k] for k in ("tiles", "cut", "unreadable")
            }, kind
        assert sum(s["tiles"] for s in got["splits"].values()) > 24  # images larger than a tile: cut


def test_the_cache_packs_several_archives_given_as_one_data_joined_by_commas(demo_dataset, demo_store, tmp_path):
    from fastload.errors import FastloadError
    from fastload.pack.packer import source_id

    parts = in_parts(demo_dataset, tmp_path)
    data, cache = ",".join(parts), str(tmp_path / "stores")  # train --data part0.zip,part1.tar.gz
    path, report = ensure_store(data, cache)
    assert records(path) == records(demo_store) and report["pack"]["source"] == parts
    assert os.path.basename(path).startswith("part0-") and source_id(data) == data  # (tmp_path is absolute)
    assert ensure_store(data, cache) == (path, None)  # found by the archives' stamps: not unpacked again
    os.utime(parts[1], (os.path.getmtime(parts[1]) + 5,) * 2)
    release(path)
    again, report = ensure_store(data, cache)
    assert again != path and report["pack"]["reused"]["records"] == 24 and report["pack"]["pruned"] == [path]
    with pytest.raises(FastloadError, match=f"^{tmp_path}/gone.zip: no such file$"):
        ensure_store(f"{parts[0]},{tmp_path}/gone.zip", cache)
