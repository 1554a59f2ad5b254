"""Tiny randomly initialised models, so that every test runs on the CPU in seconds."""
import pytest
import torch

from vidm.autoencoder import Autoencoder
from vidm.config import AutoencoderConfig, ContentConfig, MotionConfig, UNetConfig
from vidm.content_model import ContentModel
from vidm.motion_model import MotionModel
from vidm.pipeline import VIDMPipeline

torch.set_num_threads(1)

TINY_UNET = dict(channels=(16, 32), blocks_per_level=1, attention_levels=(1,), heads=2, embed_dim=32)


def tiny_pipeline(seed: int = 0, in_channels: int = 1, context_frames: int = 2, aug_sample_level: float = 0.05,
                  num_classes: int = 0) -> VIDMPipeline:
    torch.manual_seed(seed)
    vae = Autoencoder(AutoencoderConfig(in_channels=in_channels, channels=(8, 16, 16), resolution=32))
    content = ContentModel(ContentConfig(unet=UNetConfig(num_classes=num_classes, **TINY_UNET)))
    motion = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=4 * (1 + context_frames), num_classes=num_classes,
                                                      **TINY_UNET),
                                      context_frames=context_frames, max_frames=16,
                                      aug_sample_level=aug_sample_level))
    # Random zero-initialised output layers would make every sample identical: perturb them.
    with torch.no_grad():
        for model in (content, motion):
            for name, p in model.named_parameters():
                if torch.all(p == 0):
                    p.normal_(0, 0.02)
    return VIDMPipeline(vae, content, motion)


@pytest.fixture
def pipe():
    return tiny_pipeline()


@pytest.fixture
def pipe_dir(tmp_path, pipe):
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    return folder
