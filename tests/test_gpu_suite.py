"""The GPU suite (benchmarks/gpu_suite.py) runs where device time is short and rare: its calls into the other
benchmark scripts are checked here, on the CPU, so that a renamed argument does not cost a GPU session's call."""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "benchmarks", "gpu_suite.py")


def suite_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling_calls(tree: ast.AST) -> list[tuple[str, str, ast.Call]]:
    """(script, function, call) for each `sibling("script").function(...)` in the suite, and each call through a
    name bound to `sibling("script")` (parity = sibling("parity_yolov5"); parity.fastload_run(...))."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Name) and call.func.id == "sibling" and len(node.targets) == 1:
                bound[node.targets[0].id] = call.args[0].value
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "sibling":
                calls.append((owner.args[0].value, node.func.attr, node))
            elif isinstance(owner, ast.Name) and owner.id in bound:
                calls.append((bound[owner.id], node.func.attr, node))
    return calls


def test_each_call_into_another_benchmark_fits_its_signature():
    suite = suite_module()
    calls = sibling_calls(ast.parse(open(SUITE).read()))
    wanted = {
        ("kernels", "run"),
        ("train_step", "run"),
        ("native_masks", "run"),
        ("sliced_speed", "run"),
        ("parity_yolov5", "fastload_run"),
        ("parity_yolov5", "yolov5_run"),
        ("parity_yolov5", "speed_ratio"),
    }
    assert {(s, f) for s, f, _ in calls} >= wanted
    for script, function, call in calls:
        target = getattr(suite.sibling(script), function)
        positional = [None] * len(call.args)
        keywords = {k.arg: None for k in call.keywords}
        inspect.signature(target).bind(*positional, **keywords)  # a TypeError names what no longer fits


def test_the_trainers_arguments_hold_every_setting_the_parity_runs_read():
    tree = ast.parse(open(SUITE).read())
    given = [{k.arg for k in node.keywords} for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "Namespace"]  # fmt: skip
    assert len(given) == 2  # the trainer part's and the segment part's
    source = open(os.path.join(ROOT, "benchmarks", "parity_yolov5.py")).read()
    parity = ast.parse(source)
    for node in parity.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("fastload_run", "yolov5_run"):
            read = set(re.findall(r"\bargs\.(\w+)", ast.get_source_segment(source, node)))
            for settings in given:
                assert read <= settings, (node.name, read - settings)


@pytest.mark.parametrize("part", ["masks", "sliced", "trainer", "classify"])
def test_the_suites_parts_run_on_the_cpu_at_a_tiny_size(part, demo_store, tmp_path):
    suite = suite_module()
    if part == "masks":  # batched masks against box by box, as the suite calls it, on the CPU
        got = suite.sibling("native_masks").run([3, 7], 1, "cpu")
        assert got and "error" not in got
    elif part == "sliced":  # detect --tile's path: a picture decoded once, cut into 6 tiles
        got = suite.sibling("sliced_speed").run(1, (640, 480), 320, "n", "cpu")
        assert got["sliced"]["tiles_per_sec"] > 0 and got["decode"]["pictures_per_sec"] > 0
    elif part == "classify":  # the loader's three settings and a classifier's epoch (YOLOv5's loader: compare extra)
        got = suite.classify(str(tmp_path), 20, 2, epochs=1, device="cpu", imgsz=64, batch=4, compare=False)
        assert got["centre_w16"]["task"] == "classify" and got["train_s_cls"]["epochs"] == 1
    else:  # the trainer part's fastload side, as the suite calls it (YOLOv5's side needs the compare extra)
        parity = suite.sibling("parity_yolov5")
        args = argparse.Namespace(model="n", cfg="", hyp="", segment=False, epochs=1, imgsz=64, batch=8,
                                  device="cpu", workers=1, seed=0)  # fmt: skip
        got = parity.fastload_run(demo_store, args, str(tmp_path))
        assert len(got["epoch_images_per_sec"]) == 1 and 0 <= got["map50"] <= 1
    assert suite.PRESETS["issues"].split(",") == ["tests", "kernels", "train", "trainer"]
