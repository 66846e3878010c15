"""AutoBatch: probes at the largest multi-scale size; on a CPU it returns the default batch with a message."""

import numpy as np
from conftest import cli_process

from fastload.loader.augment import multi_scale_size
from yolo.autobatch import DEFAULT, autobatch, largest_size
from yolo.model import YOLOv5


def test_the_probe_size_is_the_largest_multi_scale_batch():
    rng = np.random.default_rng(0)
    for imgsz in (320, 416, 640):
        sizes = {multi_scale_size(rng, imgsz) for _ in range(5000)}
        assert max(sizes) == largest_size(imgsz, True) and largest_size(imgsz, False) == imgsz
    assert largest_size(640, True) == 960


def test_on_cpu_it_returns_the_default_with_a_message():
    batch, message = autobatch(YOLOv5("n", nc=3), 640, True)
    assert batch == DEFAULT and "CUDA" in message


def test_bad_batch_is_a_clear_error():
    out = cli_process("train", "--batch", "lots")
    assert out.returncode == 2 and "--batch must be a positive number or 'auto'" in out.stderr
