"""The part of each canvas the pipeline assembles (`frames`): every canvas pixel the warp's bilinear sampling
reads is in it, its windows tile it exactly once, and a perspective that sees the horizon assembles all of it."""

import numpy as np
import pytest

from fastload.loader.augment import Hyp, Layer, frames, perspective_matrices

S = 320
HYPS = {
    "zoom_shift": Hyp(),
    "affine": Hyp(degrees=30, shear=10, scale=0.9, translate=0.3),
    "perspective": Hyp(perspective=0.001, degrees=10),
}


def random_warps(hyp: Hyp, m: int, seed: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """m warps of 2s mosaics as plan_batch draws them (then the multi-scale zoom), and their mosaic centres."""
    rng = np.random.default_rng(seed)
    t, p, d, sh = hyp.translate, hyp.perspective, hyp.degrees, hyp.shear
    low = (-p, -p, -d, 1 - hyp.scale, -sh, -sh, 0.5 - t, 0.5 - t)
    high = (p, p, d, 1 + hyp.scale, sh, sh, 0.5 + t, 0.5 + t)
    M, _ = perspective_matrices(rng.uniform(low, high, (m, 8)), np.full(m, 2.0 * S), S)
    return np.diag([out / S, out / S, 1.0]) @ M, rng.integers(S // 2, 3 * S // 2, (m, 2))


@pytest.mark.parametrize("name", HYPS)
def test_every_pixel_the_warp_reads_is_assembled_and_the_windows_tile_it(name):
    layers = [Layer(k, k, (S, S), (0, 0)) for k in range(4)]
    for seed, out in enumerate((256, 320, 480)):
        M, centres = random_warps(HYPS[name], 64, seed, out)
        fields = frames(M, np.full(64, 2.0 * S), centres, [layers] * 64, out)
        g = np.r_[np.arange(0, out, 7), out - 1] + 0.5  # output pixel centres (DALI's convention), edges included
        grid = np.stack([*np.meshgrid(g, g), np.ones((len(g),) * 2)]).reshape(3, -1)
        for c, (windows, places, (h, w), matrix, _, (y0, x0, y1, x1)) in enumerate(fields):
            covered = np.zeros((h, w), int)
            for win, (y, x) in zip(windows, places, strict=True):
                covered[y : y + win.shape[0], x : x + win.shape[1]] += 1
            assert (covered == 1).all()  # multi_paste has no fill value: the windows must cover it exactly
            origin = np.round((np.linalg.inv(M[c]) @ matrix)[:2, 2])  # canvas (x, y) of the assembly pixel (0, 0)
            assert (x0 - 1, y0 - 1, y1 - y0, x1 - x0) == (*origin, h - 2, w - 2)  # the region: inside the ring
            q = np.linalg.inv(M[c]) @ grid
            q = q[:2] / q[2]  # the canvas points sampled, continuous coordinates
            taps = np.floor(q - 0.5)[:, :, None] + [0, 1]  # the two pixels bilinear reads on each axis
            on_canvas = (taps >= 0) & (taps <= 2 * S - 1)  # off the canvas both read grey 114
            inside = (taps >= origin[:, None, None] + 1) & (taps <= origin[:, None, None] + [[[w - 2]], [[h - 2]]])
            assert (inside | ~on_canvas).all(), (name, seed, c)


def test_a_perspective_that_sees_the_horizon_assembles_the_whole_canvas():
    M = np.eye(3)
    M[2, 0] = 0.002  # inverse: w = 1 - 0.002 x, so the output's right-hand corners map from behind the viewer
    quadrants = [[Layer(k, k, (S, S), (0, 0)) for k in range(4)]]
    ((_, _, size, matrix, _, region),) = frames(M[None], np.array([2.0 * S]), np.array([[S, S]]), quadrants, 640)
    assert size == (2 * S + 2, 2 * S + 2) and region == (0, 0, 2 * S, 2 * S)  # the whole canvas inside its ring
    assert np.allclose(matrix, M @ [[1, 0, -1], [0, 1, -1], [0, 0, 1]])  # assembly (0, 0) is canvas (-1, -1)
