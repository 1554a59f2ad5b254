"""Tiny randomly initialised models, so that every test runs on the CPU in seconds; the rule for the demo's
optional tools (skip where they are missing, fail where the run must include the browser tests)."""
import importlib
import importlib.util
import os

import pytest
import torch

from vidm.autoencoder import Autoencoder
from vidm.config import AutoencoderConfig, ContentConfig, LayersConfig, MotionConfig, UNetConfig
from vidm.content_model import ContentModel
from vidm.motion_model import MotionModel
from vidm.pipeline import VIDMPipeline

torch.set_num_threads(1)

TINY_UNET = dict(channels=(16, 32), blocks_per_level=1, attention_levels=(1,), heads=2, embed_dim=32)
TINY_LAYERS = dict(num_layers=2, resolution=64, hidden=32, depth=2, track_frames=4, motion_steps=2)


def perturb_zero_weights(model):
    """Zero-initialised output layers make every output zero (and every sample identical): give them small
    random values."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.normal_(0, 0.02)
    return model


def tiny_pipeline(seed: int = 0, in_channels: int = 1, context_frames: int = 2, aug_sample_level: float = 0.05,
                  num_classes: int = 0) -> VIDMPipeline:
    torch.manual_seed(seed)
    vae = Autoencoder(AutoencoderConfig(in_channels=in_channels, channels=(8, 16, 16), resolution=32))
    content = ContentModel(ContentConfig(unet=UNetConfig(num_classes=num_classes, **TINY_UNET)))
    motion = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=4 * (1 + context_frames), num_classes=num_classes,
                                                      **TINY_UNET),
                                      context_frames=context_frames, max_frames=16,
                                      aug_sample_level=aug_sample_level))
    return VIDMPipeline(vae, perturb_zero_weights(content), perturb_zero_weights(motion))


def tiny_layered_pipeline(seed: int = 0, sample_steps: int = 0) -> VIDMPipeline:
    """Tiny models at Moving MNIST's 64x64 with a layered motion model, whose UNet also reads the layers'
    composite; by default it gives that composite alone (sample_steps 0), as the shipped model does."""
    torch.manual_seed(seed)
    vae = Autoencoder(AutoencoderConfig(in_channels=1, channels=(8, 16, 16), resolution=64))
    content = ContentModel(ContentConfig(unet=UNetConfig(**TINY_UNET)))
    motion = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=16, **TINY_UNET), context_frames=2, max_frames=16,
                                      sample_steps=sample_steps, layers=LayersConfig(**TINY_LAYERS)))
    return VIDMPipeline(vae, perturb_zero_weights(content), perturb_zero_weights(motion))


@pytest.fixture
def pipe():
    return tiny_pipeline()


@pytest.fixture
def pipe_dir(tmp_path, pipe):
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    return folder


# CI sets VIDM_REQUIRE_BROWSER=1 (.ci/run): the demo's tests in Chromium must run there, so a missing tool is a
# failure instead of a skip, and a run in which no browser test passed fails at the end.
REQUIRE_BROWSER = os.environ.get("VIDM_REQUIRE_BROWSER") == "1"
BROWSER_TESTS = "test_demo_browser.py"


def demo_requirement(module: str, reason: str):
    """Imports a tool the demo's tests need. Where it is not installed the test (or module) skips, or fails under
    VIDM_REQUIRE_BROWSER=1; an ImportError raised inside an installed module always fails."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        missing(reason)
    return importlib.import_module(module)


def missing(reason: str) -> None:
    """Skips for a missing tool of the demo's tests, or fails under VIDM_REQUIRE_BROWSER=1."""
    if REQUIRE_BROWSER:
        pytest.fail(f"VIDM_REQUIRE_BROWSER=1, but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


_browser_tests_passed = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and BROWSER_TESTS in report.nodeid:
        _browser_tests_passed.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_BROWSER and not _browser_tests_passed and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if REQUIRE_BROWSER and not _browser_tests_passed:
        terminalreporter.write_line(f"VIDM_REQUIRE_BROWSER=1, but no test of {BROWSER_TESTS} ran and passed", red=True)
