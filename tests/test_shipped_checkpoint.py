"""The shipped checkpoint makes Moving-MNIST-like video: moving digits, neither static nor noise."""
import numpy as np
import pytest

from vidm.cli import default_model_dir
from vidm.data.moving_mnist import MovingMNIST
from vidm.pipeline import VIDMPipeline


def frame_stats(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale frames (..., H, W) -> per frame fraction of background (dark) and of stroke (bright) pixels."""
    return (gray < 40).mean(axis=(-1, -2)).ravel(), (gray > 128).mean(axis=(-1, -2)).ravel()


@pytest.fixture(scope="module")
def generated():
    pipe = VIDMPipeline.from_pretrained(default_model_dir())
    return pipe(num_videos=2, num_frames=12, seed=0).frames  # (2, 12, 64, 64, 3), at the model's own steps


def test_shipped_checkpoint_loads_from_the_default_location():
    pipe = VIDMPipeline.from_pretrained(default_model_dir())
    assert pipe.resolution == 64


def test_generated_frames_look_like_the_data_not_noise(generated):
    real = MovingMNIST("test", frames=12, seed=0).videos(20)
    real_dark, real_bright = frame_stats(real)
    dark, bright = frame_stats(generated[..., 0])
    assert dark.min() > real_dark.min() - 0.05, (dark.min(), real_dark.min())
    assert real_bright.min() / 2 < bright.mean() < real_bright.max() * 1.5, (bright.mean(), real_bright.min())


def test_generated_video_moves_smoothly(generated):
    frames = generated[..., 0].astype(float) / 255
    step = np.abs(np.diff(frames, axis=1)).mean(axis=(-1, -2))  # consecutive frames
    far = np.abs(frames[:, -1] - frames[:, 0]).mean(axis=(-1, -2))  # 11 frames apart
    assert np.all(far > 0.02), far  # not static: the digits moved
    assert np.all(step.mean(axis=1) < far), (step.mean(axis=1), far)  # and moved gradually, not by jumps
