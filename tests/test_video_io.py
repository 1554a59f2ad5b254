import numpy as np
import pytest
from PIL import Image

from vidm.errors import VidmError
from vidm.video_io import VideoWriter, fit_frames, read_image, read_video, write_video


def smooth_clip(t=6, h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(xx * 4 + 10 * i) % 256, yy * 5 % 256, np.full_like(xx, 128)], -1)
                     for i in range(t)]).astype(np.uint8)


@pytest.mark.parametrize("name", ["v.mp4", "v.webm", "v.gif", "frames"])
def test_write_then_read_round_trip(tmp_path, name):
    clip = smooth_clip()
    path = write_video(clip, tmp_path / name)
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 12  # lossy codecs, close on smooth content
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing temporary left behind


def test_npy_and_grayscale_inputs(tmp_path):
    np.save(tmp_path / "g.npy", np.zeros((3, 20, 30), np.uint8))
    assert read_video(tmp_path / "g.npy").shape == (3, 20, 30, 1)
    np.save(tmp_path / "bad.npy", np.zeros((20, 30), np.uint8))
    with pytest.raises(VidmError, match="expected an array"):
        read_video(tmp_path / "bad.npy")


def test_fit_frames_resizes_and_center_crops():
    clip = np.zeros((2, 30, 90, 3), np.uint8)
    clip[:, :, 30:60] = 255  # the middle third survives a center crop to a square
    out = fit_frames(clip, 16, 3)
    assert out.shape == (2, 16, 16, 3) and out.min() > 200
    gray = fit_frames(clip, 16, 1)
    assert gray.shape == (2, 16, 16, 1) and gray.min() > 200
    assert fit_frames(np.zeros((1, 8, 8, 1), np.uint8), 16, 3).shape == (1, 16, 16, 3)


def test_images_of_any_mode_and_depth(tmp_path):
    Image.fromarray((np.arange(4000 * 3000) % 65536).reshape(3000, 4000).astype(np.uint16)).save(tmp_path / "a.png")
    big = read_image(tmp_path / "a.png")
    assert big.shape == (3000, 4000, 1) and big.dtype == np.uint8 and big.max() > 200
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    assert abs(int(read_image(tmp_path / "b.png")[0, 0, 0]) - 128) <= 1  # alpha onto black
    assert fit_frames(big[None], 64, 3).shape == (1, 64, 64, 3)


def test_bad_videos(tmp_path):
    with pytest.raises(VidmError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "x.mp4").write_text("not a video")
    with pytest.raises(VidmError, match="no frames"):
        read_video(tmp_path / "x.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidmError, match="no image frames"):
        read_video(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(VidmError, match="unsupported"):
        read_video(tmp_path / "x.txt")
    np.save(tmp_path / "zero.npy", np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(VidmError, match="no frames"):
        read_video(tmp_path / "zero.npy")


def test_bad_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(VidmError, match="not a readable image"):
        read_image(tmp_path / "x.png")


def test_writer_failure_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "v.mp4") as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("generation failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VidmError, match="cannot write"):
        VideoWriter(tmp_path / "v.avi")
