"""`vidm demo` without a browser: request limits, upload checks, the files a request makes, the handlers."""
import cv2
import numpy as np
import pytest
from PIL import Image

from vidm.cli import main
from vidm.demo.inputs import MAX_CLIP_FRAMES, Limits, check_request, load_clip, load_image
from vidm.demo.results import Recorder, tile
from vidm.errors import VidmError
from vidm.video_io import read_video, write_video

from conftest import demo_requirement

LIMITS = Limits(max_videos=2, max_frames=8, max_steps=4)


def test_zero_steps_pass_the_limits_and_a_plain_model_refuses_them_by_name(demo):
    assert check_request(LIMITS, 1, 2, 0, "ddim", 0).steps == 0  # a layered model's composite alone
    import gradio as gr
    updates = []
    with pytest.raises(gr.Error):
        for update in demo.from_scratch(1, 2, 0, "ddim", 0):
            updates.append(update)
    assert "at least 1 for a motion model without layers" in updates[-1]["status"]


def test_requests_within_the_limits_pass_and_sliders_floats_become_ints():
    request = check_request(LIMITS, 2.0, 8.0, 4, "ddim", 3.0)
    assert (request.num_videos, request.frames, request.steps, request.sampler, request.seed) == (2, 8, 4, "ddim", 3)
    assert isinstance(request.frames, int)


@pytest.mark.parametrize("field, values, message", [
    ("frames", (1, 9, 2, "ddim", 0), r"frames: 9 is above this server's limit of 8 \(vidm demo --max-frames\)"),
    ("steps", (1, 2, 500, "ddim", 0), r"steps: 500 is above this server's limit of 4"),
    ("videos", (3, 2, 2, "ddim", 0), r"videos: 3 is above this server's limit of 2"),
    ("frames", (1, 0, 2, "ddim", 0), r"frames must be at least 1"),
    ("frames", (1, 2.5, 2, "ddim", 0), r"frames: expected a whole number"),
    ("seed", (1, 2, 2, "ddim", None), r"seed: expected a whole number"),
    ("sampler", (1, 2, 2, "euler", 0), r"unknown sampler 'euler'"),
])
def test_requests_beyond_the_limits_or_malformed_are_refused_by_name(field, values, message):
    with pytest.raises(VidmError, match=message):
        check_request(LIMITS, *values)


def test_a_huge_image_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")  # 100 megapixels, a few kB on disk
    monkeypatch.setattr("vidm.demo.inputs.read_image", lambda path: pytest.fail("decoded a refused image"))
    with pytest.raises(VidmError, match=r"huge.png: image too large \(10000 x 10000\); the limit is 50 megapixels"):
        load_image(tmp_path / "huge.png")


def test_images_of_any_mode_load_and_non_images_are_named_without_the_server_path(tmp_path):
    Image.new("RGBA", (30, 20)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (20, 30, 3)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(VidmError) as error:
        load_image(tmp_path / "notes.png")
    assert str(error.value) == "notes.png: not a readable image (UnidentifiedImageError)"
    with pytest.raises(VidmError, match="no file uploaded"):
        load_image(None)


def test_broken_clips_get_clear_messages(tmp_path):
    (tmp_path / "text.mp4").write_text("this is a text file, renamed\n")
    write_video(np.full((8, 32, 32, 3), 128, np.uint8), tmp_path / "ok.mp4")
    data = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    np.save(tmp_path / "empty.npy", np.zeros((0, 32, 32), np.uint8))
    cv2.VideoWriter(str(tmp_path / "empty.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 32)).release()
    assert (tmp_path / "empty.mp4").stat().st_size > 0  # a container with no frames in it
    for name in ("text.mp4", "truncated.mp4", "empty.npy", "empty.mp4"):
        with pytest.raises(VidmError, match=f"^{name}: no frames could be read$"):
            load_clip(tmp_path / name)
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(VidmError, match="clip.txt: unsupported file type '.txt'"):
        load_clip(tmp_path / "clip.txt")


def test_clips_are_refused_by_size_before_decoding(tmp_path, monkeypatch):
    np.save(tmp_path / "long.npy", np.zeros((MAX_CLIP_FRAMES + 1, 2, 2), np.uint8))
    monkeypatch.setattr("vidm.demo.inputs.read_video", lambda path: pytest.fail("decoded a refused clip"))
    with pytest.raises(VidmError, match=f"long.npy: {MAX_CLIP_FRAMES + 1} frames; the limit is {MAX_CLIP_FRAMES}"):
        load_clip(tmp_path / "long.npy")


def test_a_clip_that_loads_has_no_note(tmp_path):
    write_video(np.full((8, 32, 32, 3), 128, np.uint8), tmp_path / "ok.mp4")
    clip, note = load_clip(tmp_path / "ok.mp4")
    assert clip.shape == (8, 32, 32, 3) and note is None


def test_a_truncated_clip_whose_header_survives_is_continued_with_a_note(tmp_path):
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "whole.mp4"), "w", options={"movflags": "faststart"}) as container:  # header first
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        noise = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)  # frames of similar size
        for frame in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    clip, note = load_clip(tmp_path / "cut.mp4")
    assert 0 < len(clip) < 15
    assert note == (f"cut.mp4 looks truncated or damaged: its header lists 16 frames, {len(clip)} could be decoded; "
                    f"continuing from frame {len(clip)}")


def test_recorder_writes_playable_videos_and_a_sheet_of_every_8th_frame(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (2, 17, 32, 32, 3), dtype=np.uint8)
    recorder = Recorder(tmp_path, 2, fps=8)
    for t in range(17):
        recorder.add(frames[:, t])
    result = recorder.finish()
    assert [p.name for p in result.videos] == ["video_000.mp4", "video_001.mp4"] and result.frames == 17
    assert read_video(result.videos[1]).shape == (17, 32, 32, 3)
    assert read_video(result.player).shape == (17, 32, 66, 3)  # two videos and a 2-pixel gap
    sheet = np.asarray(Image.open(result.sheet))
    assert sheet.shape == (66, 3 * 32 + 4, 3)  # frames 0, 8, 16 of each video
    np.testing.assert_array_equal(sheet[34:, 34:66], frames[1, 8])
    assert tile(frames[:, 0]).shape == (32, 66, 3)
    three = tile(frames[[0, 1, 1], 0])  # a 2 x 2 grid, the last cell empty
    assert three.shape == (66, 66, 3) and three[34:, 34:].max() == 0
    np.testing.assert_array_equal(three[34:, :32], frames[1, 0])


def test_an_aborted_recorder_leaves_no_videos(tmp_path):
    recorder = Recorder(tmp_path, 2, fps=8)
    recorder.add(np.zeros((2, 32, 32, 3), np.uint8))
    recorder.abort()
    assert list(tmp_path.iterdir()) == []


# --- the handlers behind the page (need Gradio) ---

def need_gradio():
    """Gradio, or a skip where the demo extra is not installed (a failure under VIDM_REQUIRE_BROWSER=1)."""
    return demo_requirement("gradio", 'the demo extra (Gradio) is not installed: pip install -e ".[demo]"')


@pytest.fixture
def demo(pipe, tmp_path):
    need_gradio()
    from vidm.demo import app  # with Gradio installed, an ImportError inside the app fails the tests

    return app.Demo(pipe, LIMITS, tmp_path)


def run(handler, *args):
    updates = list(handler(*args))
    return updates, updates[-1]


def test_from_scratch_streams_progress_then_the_result(demo):
    updates, last = run(demo.from_scratch, 2, 5, 2, "dpmpp_2m", 0)
    statuses = [u["status"] for u in updates]
    assert statuses[1:6] == [f"frame {i} of 5" for i in range(1, 6)]
    assert all(u["preview"].shape == (32, 66, 3) for u in updates[1:6])
    assert last["status"].startswith("done: 2 videos of 5 frames")
    assert [read_video(p).shape[0] for p in last["files"]] == [5, 5]
    assert read_video(last["player"]).shape == (5, 32, 66, 3)


def test_from_an_image_makes_what_the_pipeline_makes_from_it(demo, pipe, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (40, 90), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "noise.png")
    _, last = run(demo.from_image, {"path": str(tmp_path / "noise.png")}, 1, 3, 2, "ddim", 0)
    expected = pipe(num_frames=3, first_frame=image[..., None], num_inference_steps=2, sampler="ddim", seed=0).frames[0]
    video = read_video(last["player"])
    assert video.shape == (3, 32, 32, 3) and np.abs(video.astype(int) - expected).mean() < 3  # H.264 is lossy


def test_extend_writes_the_clip_then_the_new_frames(demo, tmp_path):
    write_video(np.full((4, 48, 64, 3), 200, np.uint8), tmp_path / "clip.mp4")
    updates, last = run(demo.extend, {"path": str(tmp_path / "clip.mp4")}, 2, 3, 2, "ddim", 0)
    assert updates[-2]["status"] == "frame 3 of 3"
    assert read_video(last["player"]).shape == (7, 32, 66, 3)  # two continuations of the clip
    first, second = (read_video(p) for p in last["files"])
    assert np.abs(first[:4].astype(int) - second[:4]).max() <= 2 and np.abs(first[4:].astype(int) - second[4:]).max() > 2


@pytest.mark.parametrize("handler, args, message", [
    ("from_scratch", (1, 100, 2, "ddim", 0), "frames: 100 is above this server&#x27;s limit of 8"),
    ("from_image", ("UPLOAD", 1, 3, 2, "ddim", 0), "&lt;i&gt;notes.png: not a readable image"),
    ("extend", (None, 1, 3, 2, "ddim", 0), "no file uploaded"),
])
def test_bad_requests_show_a_message_and_raise_gradio_errors(demo, tmp_path, handler, args, message):
    """The message is HTML-escaped (Gradio renders it as HTML) and names an upload without its server path."""
    import gradio as gr
    (tmp_path / "<i>notes.png").write_text("a text file")
    args = [{"path": str(tmp_path / "<i>notes.png")} if a == "UPLOAD" else a for a in args]
    updates = []
    with pytest.raises(gr.Error) as error:
        for update in getattr(demo, handler)(*args):
            updates.append(update)
    assert message in error.value.message and str(tmp_path) not in error.value.message
    assert updates[-1]["status"] == f"**Error:** {error.value.message}"


def test_a_failure_of_the_server_itself_is_reported_without_its_details(demo, monkeypatch):
    import gradio as gr

    def broken(**kwargs):
        raise RuntimeError("/secret/path exploded")
        yield

    monkeypatch.setattr(demo.pipe, "stream", broken)
    with pytest.raises(gr.Error) as error:
        list(demo.from_scratch(1, 2, 2, "ddim", 0))
    assert error.value.message == "the server failed (RuntimeError); its log says more"
    assert not list(demo.outputs.rglob("*.mp4"))  # no partial results


# --- the command ---

def test_a_model_that_does_not_load_stops_the_demo_before_it_serves(tmp_path, capsys):
    need_gradio()  # without it the demo stops earlier, saying how to install it (the next test)
    with pytest.raises(SystemExit) as exit:
        main(["demo", "--model", str(tmp_path / "missing"), "--port", "1"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == f"vidm: error: model folder not found: {tmp_path / 'missing'}\n"


def test_without_gradio_the_demo_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    with pytest.raises(SystemExit):
        main(["demo"])
    err = capsys.readouterr().err
    assert err == 'vidm: error: vidm demo needs the demo extra: pip install -e ".[demo]" (Gradio and PyAV)\n'
