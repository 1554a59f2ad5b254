"""`vidm demo`: loads the model, then serves the page on this machine until stopped, and cleans up after."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

from ..errors import VidmError
from ..video_io import h264_available
from .inputs import Limits

INSTALL = 'vidm demo needs the demo extra: pip install -e ".[demo]" (Gradio and PyAV)'


def _stop_on_sigterm(signum, frame):
    # Gradio's launch() stops serving on KeyboardInterrupt and returns; a plain SIGTERM would skip the cleanup.
    raise KeyboardInterrupt


def serve(args, load_pipeline, model_name: str = "") -> None:
    """Serves the demo for `args` (the parsed `vidm demo` command line); `load_pipeline(args)` loads the model."""
    if importlib.util.find_spec("gradio") is None or not h264_available():
        raise VidmError(INSTALL)
    limits = Limits(max_videos=args.max_videos, max_frames=args.max_frames, max_steps=args.max_steps,
                    max_upload_mb=args.max_upload_mb)
    pipe = load_pipeline(args)  # a model that does not load stops here, before anything is served
    root = Path(tempfile.mkdtemp(prefix="vidm-demo-"))
    # Gradio reads these when it is imported: uploads and its copies of results go under `root`, and
    # nothing is reported to Gradio's servers.
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        from . import app as page

        (root / "outputs").mkdir()
        blocks = page.build(pipe, limits, root / "outputs", model_name)
        blocks.queue(default_concurrency_limit=1, api_open=False)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"vidm demo: serving on {args.host}: anyone who can reach this machine can use it")
        try:
            blocks.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                          max_file_size=int(limits.max_upload_mb * 2**20), theme=page.THEME, css=page.CSS,
                          ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
                          footer_links=[], quiet=True, show_error=False, prevent_thread_lock=True)
        except OSError as e:
            raise VidmError(f"cannot serve on {args.host}:{args.port}: {e}") from None
        print(f"vidm demo: serving at {blocks.local_url} (Ctrl+C stops it)", flush=True)
        blocks.block_thread()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)
