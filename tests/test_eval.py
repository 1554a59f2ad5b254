"""Fast checks of the benchmark metrics (vidm.metrics) and the eval/ helpers, on tiny models."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidm.metrics import PSNR_CAP, bright_fraction, count_blobs, mse_per_frame, psnr, ssim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))


def frames(seed=0, shape=(3, 64, 64)):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_identical_frames():
    x = frames()
    assert np.all(mse_per_frame(x, x) == 0)
    assert np.all(psnr(x, x) == PSNR_CAP)
    np.testing.assert_allclose(ssim(x, x), 1.0)


def test_mse_is_summed_over_the_frame_in_unit_range():
    black, white = np.zeros((2, 64, 64), np.uint8), np.full((2, 64, 64), 255, np.uint8)
    np.testing.assert_allclose(mse_per_frame(black, white), [4096, 4096])
    # channels (RGB with equal channels, as the pipeline returns) give the same numbers as grayscale
    a, b = frames(1), frames(2)
    np.testing.assert_allclose(mse_per_frame(a[..., None].repeat(3, -1), b[..., None].repeat(3, -1)),
                               mse_per_frame(a, b))
    np.testing.assert_allclose(psnr(black, white), [0.0, 0.0])


def test_ssim_matches_skimage():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = frames(3), frames(4)
    b[1] = np.clip(a[1].astype(int) + 20, 0, 255)  # a similar pair as well as unrelated ones
    ours = ssim(a, b)
    ref = [skimage_metrics.structural_similarity(x / 255.0, y / 255.0, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_blob_statistics_on_a_synthetic_frame():
    f = np.zeros((64, 64), np.uint8)
    f[5:15, 5:15] = 255  # a "digit"
    f[40:50, 30:45] = 200  # another
    f[60, 60] = 255  # a speck: ignored
    f[20:30, 50:60] = 100  # too dark: not above the threshold
    assert count_blobs(f) == 2
    assert count_blobs(np.stack([f, np.zeros_like(f)])).tolist() == [2, 0]
    np.testing.assert_allclose(bright_fraction(f), (100 + 150 + 1) / 4096)


def test_predict_on_a_tiny_pipeline_does_not_depend_on_the_batch():
    from conftest import tiny_pipeline
    from quality import frame_metrics, predict, summarise

    pipe = tiny_pipeline()
    clips = frames(5, (3, 4, 32, 32))
    pred = predict(pipe, clips, future=2, sampler="ddim", steps=3, seed=0, batch=2)
    assert pred.shape == (3, 2, 32, 32) and pred.dtype == np.uint8
    # batch size does not change predictions (sequence i uses seed + i)
    np.testing.assert_array_equal(pred, predict(pipe, clips, 2, "ddim", 3, 0, batch=3))
    summary = summarise(frame_metrics(pred, clips[:, -2:]))
    assert set(summary) == {"mse", "ssim", "psnr"} and len(summary["mse"]["per_frame"]) == 2


def test_digit_identity_kept_only_while_the_set_of_frame_0_stays():
    import digits

    sets = np.zeros((3, 4, 10), dtype=bool)
    sets[0, :, [2, 7]] = True  # the same two digits throughout
    sets[1, :, 2] = True
    sets[1, 2:, 2], sets[1, 2:, 5] = False, True  # a 2 morphs into a 5 at frame 2
    sets[2, 0, 3] = True  # a 3, then nothing recognisable
    np.testing.assert_array_equal(digits.kept(sets), [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    assert not digits.kept(np.zeros((1, 2, 10), dtype=bool)).any()  # an empty set is never kept


def test_translation_ceiling_moves_frame_0_and_asks_the_classifier_again():
    import digits

    frame = np.zeros((1, 64, 64), dtype=np.uint8)
    frame[0, 10:20, 28:31] = 255  # ink in columns 28-30
    moved = digits.shifted(frame, 2)
    assert moved[0, 12:22, 30:33].min() == 255 and moved.sum() == frame.sum()  # moved, nothing wrapped

    class LeftHalf(torch.nn.Module):  # "class 0" is present while there is ink left of column 32
        def forward(self, x):
            ink = (x[:, 0, :, :32] > 0).flatten(1).any(dim=1).float() * 2 - 1
            return torch.stack([ink] + [-torch.ones_like(ink)] * 9, dim=1)

    ceiling = digits.translation_ceiling(LeftHalf(), frame, shifts=(1, 2, 4))
    assert ceiling == {"1px": 1.0, "2px": 1.0, "4px": 0.0}  # at 4 px the ink has left the left half


def test_first_frame_digit_counts_are_shares_of_frames_by_number_of_digits_named():
    import digits

    class InkRows(torch.nn.Module):  # names one class per inked quarter of the rows: 0..4 digits
        def forward(self, x):
            rows = (x[:, 0] > 0).any(dim=2).float()  # (N, 64)
            named = rows.reshape(len(x), 4, 16).amax(dim=2) * 2 - 1  # (N, 4)
            return torch.cat([named, -torch.ones(len(x), 6)], dim=1)

    f = np.zeros((4, 64, 64), dtype=np.uint8)
    f[1, 5, 5] = 255  # one digit
    f[2, [5, 20], 5] = 255  # two
    f[3, [5, 20, 40], 5] = 255  # three
    counts = digits.count_shares(digits.digit_sets(InkRows(), f))
    assert counts == {"0": 0.25, "1": 0.25, "2": 0.25, "3+": 0.25}


def test_digit_classifier_targets_name_the_digits_of_each_frame():
    import digits

    frames, targets = digits.labelled_frames("test", num=3, frames=2, seed=0)
    assert frames.shape == (6, 64, 64) and targets.shape == (6, 10)
    from vidm.data.moving_mnist import MovingMNIST
    data = MovingMNIST("test", frames=2, seed=0)
    for i in range(3):
        expected = set(data.classes(i).tolist())
        for t in range(2):
            assert set(np.flatnonzero(targets[2 * i + t]).tolist()) == expected


def test_overlap_pixels_count_ink_both_digits_share():
    from overlap import INK, overlap_pixels

    class TwoSquares:  # stands in for MovingMNIST.sample: two 28x28 digits, each a 10x10 bright square
        def sample(self, index):
            img = np.zeros((2, 28, 28), np.uint8)
            img[:, 9:19, 9:19] = 255
            corners = np.array([[[0, 0], [0, 0]],     # same place: the squares coincide
                                [[0, 0], [0, 5]],     # 5 px apart: a 10x5 overlap
                                [[0, 0], [30, 30]]])  # far apart
            return img, corners

    assert INK < 255
    np.testing.assert_array_equal(overlap_pixels(TwoSquares(), 0), [100, 50, 0])


def test_cli_speed_reads_the_generate_line():
    from cli_speed import parse_generate_line

    line = ("wrote 1 videos of 256 frames to out/ in 60.3 s (4.2 frames/s, the layered composite (0 steps) per frame, "
            "first frame ddpm x 50 steps, seed 0, 1 thread)\n")
    assert parse_generate_line("loading\n" + line) == {"frames_per_second": 4.2, "threads": 1}
    with pytest.raises(ValueError, match="frames/s"):
        parse_generate_line("Traceback ...")


def test_ink_kept_counts_frames_with_half_of_frame_zeros_ink():
    from digits import ink_kept

    video = np.zeros((1, 4, 8, 8), np.uint8)
    video[0, 0, :4, :4] = 255  # 16 ink pixels
    video[0, 1, 2:6, 2:6] = 255  # moved: all 16 kept
    video[0, 2, :2, :4] = 255  # 8: exactly half
    video[0, 3, :2, :4] = 100  # faded below the ink level
    assert ink_kept(video).tolist() == [[True, True, False]]


def test_ablation_row_reads_each_measure_and_the_training_cost(tmp_path):
    import json

    from ablation import row

    run = tmp_path / "plain"
    run.mkdir()
    (run / "training.json").write_text(json.dumps({"steps": 5000, "cpu_hours": 0.5}))
    (run / "quality.json").write_text(json.dumps({"prediction": {"model": {"mse": {"mean": 150.0}}}}))
    per = [0.5] + [0.3] * 8 + [0.2] + [0.1] * 10
    (run / "overlap.json").write_text(json.dumps({"groups": {g: {"model_kept_per_future_frame": per}
                                                             for g in ("cross", "apart")}}))
    r = row(run)
    assert r["steps_per_cpu_hour"] == 10_000 and r["mse_sample"] == 150.0 and r["mse_mean"] is None
    assert (r["cross_t1"], r["cross_t10"], r["apart_t20"]) == (0.5, 0.2, 0.1)
    assert "digits_mean" not in r  # not measured: the table shows "-"
    assert row(tmp_path / "missing") is None


def test_ablation_measures_the_mean_alone_only_of_a_layered_model(tmp_path):
    import json

    from ablation import has_mean

    for name, config in (("layered", {"layers": {"num_layers": 2}}), ("plain", {"layers": None}), ("old", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"kind": "motion", "config": config}))
    assert has_mean(tmp_path / "layered") and not has_mean(tmp_path / "plain") and not has_mean(tmp_path / "old")
