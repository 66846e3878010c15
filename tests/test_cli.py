"""The CLI contract: --help everywhere, --json as the last stdout line, exit codes, `python -m fastload`."""

import json

import numpy as np
import pytest
from conftest import cli, cli_process

from fastload.store import open_store

COMMANDS = [
    "demo-data",
    "pack",
    "info",
    "verify",
    "unpack",
    "merge",
    "demo",
    "bench",
    "preview",
    "train",
    "val",
    "detect",
    "export",
    "model",
]


def test_the_list_holds_every_command():
    import fastload.cli_deploy  # noqa: F401  (they add their commands to the group)
    import fastload.cli_model  # noqa: F401
    from fastload.cli import main

    assert sorted(COMMANDS) == sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    proc = cli_process(command, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout and "--json" in proc.stdout


def test_info_json_carries_the_contract_keys(demo_dataset, tmp_path):
    out = str(tmp_path / "i.zarr")
    cli("pack", demo_dataset, "-o", out, "--format", "zarr")
    proc = cli_process("info", out, "--json")
    assert proc.returncode == 0
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(proc.stdout.strip().splitlines()) == 1  # human output went to stderr
    assert {"format", "splits", "skipped", "names"} <= set(result) and result["format"] == "zarr"
    assert result["splits"]["val"]["count"] == 5 and result["splits"]["val"]["bytes"] > 0
    assert "val: 5 images" in proc.stderr
    for split, info in result["splits"].items():  # boxes per class, as counted from each record's labels
        store = open_store(out, split)
        counted = np.bincount(np.concatenate([store.labels(i)[:, 0] for i in range(len(store))]).astype(int),
                              minlength=3)  # fmt: skip
        assert list(info["instances"].values()) == counted.tolist() and sum(counted) == info["boxes"] > 0
        assert list(info["instances"]) == result["names"]


def test_bad_usage_exits_2():
    assert cli_process("pack", "somewhere").returncode == 2  # missing -o
    assert cli_process("pack", "x", "-o", "y", "--format", "tar").returncode == 2
    proc = cli_process("info", "/nonexistent/store.lmdb")
    assert proc.returncode == 2 and proc.stderr.strip() == "Error: /nonexistent/store.lmdb: no such store"


def test_pack_refuses_to_overwrite_something_that_is_not_a_store(demo_dataset, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    proc = cli_process("pack", demo_dataset, "-o", str(precious))
    assert proc.returncode == 2 and "not a fastload store" in proc.stderr and precious.read_text() == "keep me"
    folder = tmp_path / "notes"
    (folder / "a").mkdir(parents=True)
    assert cli_process("pack", demo_dataset, "-o", str(folder)).returncode == 2 and (folder / "a").is_dir()


def test_pack_takes_the_format_from_the_name_unless_told(demo_dataset, tmp_path):
    """*.zarr (with or without a trailing slash; an empty folder made for it is fine) is Zarr, anything else LMDB;
    --format wins."""
    (tmp_path / "made.zarr").mkdir()
    for out, told, fmt in [("a.zarr", [], "zarr"), ("made.zarr/", [], "zarr"), ("b.lmdb", [], "lmdb"),
                           ("c.db", [], "lmdb"), ("d.zarr", ["--format", "lmdb"], "lmdb")]:  # fmt: skip
        path = str(tmp_path / out)
        assert cli("pack", demo_dataset, "-o", path, *told, "--json")["format"] == fmt
        assert open_store(path).format == fmt and len(open_store(path, "val")) == 5


def test_an_output_that_cannot_be_written_is_one_line_naming_it(demo_dataset, tmp_path):
    """OSErrors from around the job (here: a folder inside a file) end in one line naming the output, exit 1;
    a pack names its store, not its temporary file."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    for args, named in [
        (["pack", demo_dataset, "-o", str(blocked / "s.lmdb")], blocked / "s.lmdb"),
        (["pack", demo_dataset, "-o", str(blocked / "s.zarr")], blocked / "s.zarr"),
        (["demo-data", str(blocked / "d"), "--images", "2"], blocked / "d"),
    ]:
        proc = cli_process(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"Error: {named}: Not a directory", args


def test_demo_data_json(tmp_path):
    result = cli("demo-data", str(tmp_path / "d"), "--images", "5", "--scale", "0.2", "--json")
    assert result["train"] + result["val"] == 5 and len(result["names"]) == 3


def test_demo_main_job_packs_verifies_and_reads(tmp_path):
    result = cli("demo", str(tmp_path / "run"), "--images", "12", "--json")
    for fmt in ("lmdb", "zarr"):
        s = result["stores"][fmt]
        assert s["count"] == 12 and s["verify_ok"] and s["read_images_per_sec"] > 0
    assert result["loader_bench"]["images_per_sec"] > 0 and result["loader_bench"]["augment"]


def test_bench_json_carries_the_contract_keys(demo_dataset, tmp_path):
    store = str(tmp_path / "b.lmdb")
    cli("pack", demo_dataset, "-o", store)
    plot = tmp_path / "bench.png"
    for flags in ([], ["--no-augment"], ["--multi-scale"]):
        result = cli(
            "bench",
            store,
            "--imgsz",
            "96",
            "--batch",
            "4",
            "--batches",
            "2",
            "--workers",
            "1",
            "--plot",
            str(plot),
            "--json",
            *flags,
        )
        assert {"images_per_sec", "device", "imgsz", "batch", "augment", "rss_peak_mb", "stages"} <= set(result)
        assert result["images_per_sec"] > 0 and result["augment"] == ("--no-augment" not in flags)
        assert result["polygons"] is False and result["copy_paste"] is False  # a box-only store
        assert result["rss_peak_mb"] > 50 and plot.stat().st_size > 1000
        stages = result["stages"]  # where the time goes: the source worker, DALI's run, the hand-over, the wait
        assert stages["source_ms"] > 0 and stages["source_capacity_images_per_sec"] > 0
        assert 0 < stages["handover"]["median_ms"] < stages["pipeline"]["median_ms"] + stages["batch_ms_median"]
