"""First-frame anchoring: flow tracking back to frame 0, the redrawn frames, and the pipeline option."""
import cv2
import numpy as np
import pytest

from vidm.anchor import FlowAnchor
from vidm.errors import VidmError

from conftest import tiny_pipeline


def moving_blob(frames=8, step=2):
    """A smooth random texture (uint8 (T, 64, 64, 1)) moving `step` px right and down per frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (40, 40)).astype(np.float32), (0, 0), 2)
    texture = (texture - texture.min()) / np.ptp(texture) * 255
    video = np.zeros((frames, 64, 64, 1), np.uint8)
    for t in range(frames):
        o = 4 + step * t
        video[t, o:o + 40, o:o + 40, 0] = texture
    return video


def test_tracking_redraws_each_frame_from_the_first():
    video = moving_blob()
    anchor = FlowAnchor(video[:1])
    for t in range(1, len(video)):
        anchor.track(video[t:t + 1])
        redrawn = anchor.warp()[0].astype(float)
        error = np.abs(redrawn - video[t]).mean()
        assert error < 0.25 * np.abs(video[0].astype(float) - video[t]).mean(), t
    assert np.allclose(anchor.flow[0, 30, 30], [-2 * (len(video) - 1)] * 2, atol=1)  # back to frame 0


def test_strength_mixes_the_sampled_and_the_redrawn_frames():
    video = moving_blob(frames=2)
    assert np.array_equal(FlowAnchor(video[:1], strength=0)(video[1:]), video[1:])
    full, half = FlowAnchor(video[:1], strength=1)(video[1:]), FlowAnchor(video[:1], strength=0.5)(video[1:])
    assert np.abs(half.astype(float) - (full.astype(float) + video[1:]) / 2).max() <= 1
    for bad in (-0.1, 1.5, True, "1"):
        with pytest.raises(VidmError, match="anchor strength"):
            FlowAnchor(video[:1], strength=bad)


def test_pipeline_anchor_defaults_to_the_models_and_is_checked():
    pipe = tiny_pipeline()
    plain = pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=0).frames
    anchored = pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=0, anchor=1.0).frames
    assert anchored.shape == plain.shape and not np.array_equal(anchored, plain)
    assert np.array_equal(anchored[:, 0], plain[:, 0])  # the first frame is the model's own
    pipe.motion.config.anchor_strength = 1.0
    assert np.array_equal(pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=0).frames, anchored)
    assert np.array_equal(pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=0, anchor=0).frames, plain)
    with pytest.raises(VidmError, match="anchor strength"):
        pipe(num_videos=1, num_frames=2, anchor=2)
