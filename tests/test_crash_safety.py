"""A pack killed with SIGKILL midway leaves no store (or the previous one intact), and a rerun succeeds; Ctrl-C
ends a pack with one line and nothing left behind."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, children

from fastload.demo_data import DemoConfig, generate
from fastload.errors import FastloadError
from fastload.store import open_store


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory):
    """Enough work that a single-worker pack with re-encoding takes a few seconds."""
    out = str(tmp_path_factory.mktemp("slow"))
    generate(out, DemoConfig(images=120, seed=5, scale=1.0), workers=2)
    return out


def _kill_midway(src: str, out: str, fmt: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "fastload",
        "pack",
        src,
        "-o",
        out,
        "--format",
        fmt,
        "--workers",
        "1",
        "--max-side",
        "600",
        "--quality",
        "100",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder, base = os.path.dirname(out), os.path.basename(out)
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.startswith(base + ".partial-") for f in os.listdir(folder)):
        time.sleep(0.01)
    time.sleep(0.5)  # well inside the write
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "pack finished before it could be killed"
    assert any(f.startswith(base + ".partial-") for f in os.listdir(folder))


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_killed_pack_leaves_no_store_and_rerun_succeeds(slow_dataset, tmp_path, fmt):
    out = str(tmp_path / f"s.{fmt}")
    _kill_midway(slow_dataset, out, fmt)
    with pytest.raises(FastloadError):
        open_store(out)
    rerun = subprocess.run(
        [sys.executable, "-m", "fastload", "pack", slow_dataset, "-o", out, "--format", fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert len(open_store(out)) == 96
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]  # the dead writer's leftovers are gone


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_killed_repack_keeps_the_previous_store(slow_dataset, demo_dataset, tmp_path, fmt):
    out = str(tmp_path / f"s.{fmt}")
    subprocess.run(
        [sys.executable, "-m", "fastload", "pack", demo_dataset, "-o", out, "--format", fmt],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    before = open_store(out)
    expected = [bytes(before.get(i).image) for i in range(len(before))]
    _kill_midway(slow_dataset, out, fmt)
    after = open_store(out)
    assert len(after) == 19 and [bytes(after.get(i).image) for i in range(19)] == expected


def test_ctrl_c_ends_a_pack_with_one_line_and_nothing_left(slow_dataset, tmp_path):
    """SIGINT to the whole process group, as Ctrl-C sends it, once the pool's workers run: they ignore it, the main
    process stops them, removes its partial store and says one line (exit 130); no worker prints a traceback."""
    out = str(tmp_path / "s.lmdb")
    cmd = [sys.executable, "-m", "fastload", "pack", slow_dataset, "-o", out, "--workers", "2", "--max-side", "600"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and len(children(proc.pid)) < 2:
        time.sleep(0.001)
    assert any(f.startswith("s.lmdb.partial-") for f in os.listdir(tmp_path))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "Error: interrupted", err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert os.listdir(tmp_path) == []
