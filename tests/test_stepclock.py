"""Where an epoch's seconds go: the step clock's data wait and compute add up to the wall time, and on the CPU the
wait is the time blocked taking batches (on CUDA the GPU's idle time: tests/test_gpu.py)."""

import time

import torch

from yolo.stepclock import StepClock


def test_wait_and_compute_add_up_to_the_wall_time_and_the_wait_is_the_time_blocked_on_batches():
    def batches():
        for k in range(5):
            time.sleep(0.06)  # a slow loader
            yield k

    clock = StepClock(torch.device("cpu"))
    t0 = time.perf_counter()
    clock.start()
    for _ in batches():
        clock.batch_ready()
        time.sleep(0.02)  # the step
        clock.step_done()
    wait, compute = clock.stop()
    wall = time.perf_counter() - t0
    assert wait >= 0.3 and compute >= 0.1  # sleeps last at least what they ask
    assert abs(wait + compute - wall) < 0.01
    assert clock.host_wait == wait
    clock.start()  # a new epoch starts from zero
    assert clock.wait == 0 and clock.host_wait == 0


def test_a_runs_first_batch_is_the_loaders_startup_not_its_data_wait():
    def batches():
        time.sleep(0.3)  # worker processes starting, the pipeline's first batch
        for k in range(4):
            time.sleep(0.03)
            yield k

    clock = StepClock(torch.device("cpu"))
    t0 = time.perf_counter()
    clock.start(startup=True)
    for _ in batches():
        clock.batch_ready()
        time.sleep(0.02)
        clock.step_done()
    wait, compute = clock.stop()
    wall = time.perf_counter() - t0
    assert clock.startup >= 0.33 and 0.09 <= wait < 0.3 and compute >= 0.08  # with the start in it: >= 0.42
    assert abs(clock.startup + wait + compute - wall) < 0.01
    clock.start()  # later epochs: the first batch is a data wait again
    assert clock.startup == 0 and not clock.first_is_startup
