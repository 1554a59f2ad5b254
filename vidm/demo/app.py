"""The Gradio page of `vidm demo`: three ways in (from scratch, from an image, extend a clip), one result area."""
from __future__ import annotations

import html
import tempfile
import time
import traceback
from pathlib import Path

import gradio as gr
import numpy as np

from ..errors import VidmError
from ..pipeline import CONTENT_STEPS, VIDMPipeline
from ..sampling import SAMPLERS
from ..video_io import fit_frames
from .inputs import CLIP_SUFFIXES, Limits, check_request, load_clip, load_image
from .results import Recorder, tile

FPS = 8.0
# Everything the page shows is drawn from files on this server: system fonts, no web fonts.
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
# Frames are 64 x 64: the browser should enlarge them as blocks of pixels, not blur them.
CSS = ".pixelated img, .pixelated video { image-rendering: pixelated; object-fit: contain; }"
VIEW_HEIGHT = 288  # pixels in the page: 64 x 64 frames shown 4.5 times their size


def _path(payload) -> str | None:
    """The server-side path of an upload, from the component's raw value (the handlers skip preprocessing)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload or None


class Demo:
    """The handlers behind the page: each checks its request, then streams the pipeline into a Recorder."""

    def __init__(self, pipe: VIDMPipeline, limits: Limits, outputs: Path):
        self.pipe, self.limits, self.outputs = pipe, limits, Path(outputs)

    def from_scratch(self, num_videos, frames, steps, sampler, seed):
        yield from self._guarded(lambda: (check_request(self.limits, num_videos, frames, steps, sampler, seed), {}))

    def from_image(self, image, num_videos, frames, steps, sampler, seed):
        def prepare():
            request = check_request(self.limits, num_videos, frames, steps, sampler, seed)
            return request, {"first_frame": load_image(_path(image))}

        yield from self._guarded(prepare)

    def extend(self, clip, num_videos, frames, steps, sampler, seed):
        def prepare():
            request = check_request(self.limits, num_videos, frames, steps, sampler, seed)
            context, note = load_clip(_path(clip))
            if note:
                gr.Warning(html.escape(note), duration=None)
            return request, {"context": context, "note": note}

        yield from self._guarded(prepare)

    def _guarded(self, prepare):
        """Runs one request; a VidmError becomes a message in the page, and the server goes on serving."""
        try:
            request, given = prepare()
            yield from self._generate(request, **given)
        except VidmError as e:
            message = html.escape(str(e))
        except Exception as e:  # a bug, not the visitor's input: the details go to the server's log
            traceback.print_exc()
            message = f"the server failed ({type(e).__name__}); its log says more"
        else:
            return
        yield {"status": f"**Error:** {message}"}
        raise gr.Error(message, duration=None, print_exception=False)

    def _generate(self, request, first_frame=None, context=None, note=None):
        start = time.time()
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.outputs))
        recorder = Recorder(folder, request.num_videos, FPS)
        total = request.frames
        try:
            if context is not None:
                fitted = fit_frames(context, self.pipe.resolution, 3)
                for frame in fitted:  # the result holds the clip, then its continuation, as `vidm extend` writes it
                    recorder.add(np.broadcast_to(frame, (request.num_videos, *frame.shape)))
                first = f"continuing a clip of {len(fitted)} frames" + (f" ({html.escape(note)})" if note else "")
            elif first_frame is not None:
                first = "the first frame is the image"
            else:
                first = f"making the first frame ({CONTENT_STEPS} steps)"
            yield {"status": f"frame 0 of {total}: {first}", "player": None, "sheet": None, "files": None}
            stream = self.pipe.stream(num_videos=request.num_videos, num_frames=request.frames,
                                      first_frame=first_frame, context=context,
                                      num_inference_steps=request.steps, sampler=request.sampler, seed=request.seed,
                                      content_steps=CONTENT_STEPS)
            for done, frames in enumerate(stream, 1):
                recorder.add(frames)
                yield {"status": f"frame {done} of {total}", "preview": tile(frames)}
            result = recorder.finish()
        except BaseException:
            recorder.abort()
            raise
        took = time.time() - start
        made = "new frames" if context is not None else "frames"
        yield {"status": f"done: {request.num_videos} video{'s' * (request.num_videos > 1)} of {total} {made} "
                         f"in {took:.1f} s ({request.sampler}, {request.steps} steps per frame, seed {request.seed})"
                         + (f". {html.escape(note)}" if note else ""),
               "player": str(result.player), "sheet": str(result.sheet), "files": [str(p) for p in result.videos]}


def settings(limits: Limits, tab: str, steps_value: int, frames_label: str = "frames") -> list:
    """The sliders and fields every tab shares, with the server's limits as their maxima; the steps slider
    starts at the model's own steps per frame."""
    with gr.Row():
        videos = gr.Slider(1, limits.max_videos, value=min(2, limits.max_videos), step=1, label="videos",
                           elem_id=f"{tab}-videos")
        frames = gr.Slider(1, limits.max_frames, value=min(32, limits.max_frames), step=1, label=frames_label,
                           elem_id=f"{tab}-frames")
        steps = gr.Slider(0, limits.max_steps, value=steps_value, step=1, label="steps per frame",
                          elem_id=f"{tab}-steps")
    with gr.Row():
        sampler = gr.Dropdown(sorted(SAMPLERS), value="dpmpp_2m", label="sampler", elem_id=f"{tab}-sampler")
        seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1, label="seed (video i uses seed + i)",
                         elem_id=f"{tab}-seed")
    return [videos, frames, steps, sampler, seed]


def build(pipe: VIDMPipeline, limits: Limits, outputs: Path, model_name: str = "") -> gr.Blocks:
    """The page; `outputs` is the folder for results, which the caller removes."""
    demo = Demo(pipe, limits, outputs)
    steps = min(pipe.steps_per_frame(), limits.max_steps)  # the model's own (0 for a layered model)
    with gr.Blocks(title="vidm demo", analytics_enabled=False) as app:
        model = f"the model {html.escape(model_name)}" if model_name else "a video diffusion model"
        gr.Markdown(f"# vidm demo\nVideos of {pipe.resolution} x {pipe.resolution} pixels from {model}, made frame "
                    f"by frame on this machine. Limits: {limits.max_videos} videos, {limits.max_frames} frames, "
                    f"{limits.max_steps} steps per frame; one request at a time.")
        with gr.Tabs():
            with gr.Tab("From scratch"):
                scratch = settings(limits, "scratch", steps)
                scratch_go = gr.Button("Generate", variant="primary", elem_id="generate-scratch")
            with gr.Tab("From an image"):
                image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 label="first frame (any image: scaled to fit, center-cropped)", elem_id="image-input")
                from_image = settings(limits, "image", steps)
                image_go = gr.Button("Generate", variant="primary", elem_id="generate-image")
            with gr.Tab("Extend a clip"):
                clip = gr.File(file_types=CLIP_SUFFIXES, label=f"a clip ({', '.join(CLIP_SUFFIXES)})",
                               elem_id="clip-input")
                extend = settings(limits, "extend", steps, "frames to add")
                extend_go = gr.Button("Generate", variant="primary", elem_id="generate-extend")
        status = gr.Markdown("Choose a way in and press Generate.", elem_id="status")
        with gr.Row():
            preview = gr.Image(label="frames as they are made", format="png", interactive=False, height=VIEW_HEIGHT,
                               buttons=["fullscreen"], elem_classes="pixelated", elem_id="preview")
            player = gr.Video(label="result (H.264 mp4)", format="mp4", interactive=False, autoplay=True, loop=True,
                              height=VIEW_HEIGHT, buttons=["download"], elem_classes="pixelated", elem_id="player")
        sheet = gr.Image(label="contact sheet: a row per video, every 8th frame", format="png", interactive=False,
                         height=VIEW_HEIGHT, buttons=["download", "fullscreen"], elem_classes="pixelated",
                         elem_id="sheet")
        files = gr.File(label="download each video", file_count="multiple", interactive=False, elem_id="files")

        names = {"status": status, "preview": preview, "player": player, "sheet": sheet, "files": files}
        outputs = list(names.values())

        def wire(handler):
            def run(*args):
                for update in handler(*args):
                    yield {names[k]: v for k, v in update.items()}
            return run

        # One shared concurrency group: a request from any tab waits for the one running on the CPU.
        events = [(scratch_go, demo.from_scratch, scratch), (image_go, demo.from_image, [image, *from_image]),
                  (extend_go, demo.extend, [clip, *extend])]
        for button, handler, inputs in events:
            button.click(wire(handler), inputs, outputs, preprocess=False, concurrency_limit=1,
                         concurrency_id="generate", api_name=handler.__name__)
    return app
