"""VIDMPipeline: the VAE, the content model and the motion model, generating video frame by frame."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from .autoencoder import Autoencoder
from .checkpoint import load_model, save_model
from .content_model import ContentModel
from .errors import VidmError
from .layered import LayeredState
from .motion_model import MotionModel
from .sampling import get_sampler, randn_like
from .video_io import fit_frames

STAGES = ("vae", "content", "motion")
# The first frame is drawn from nothing but noise, where a stochastic sampler's fresh noise corrects the
# content model's errors: with the shipped model, ancestral steps gave two readable digits in 52% / 56% / 51%
# of first frames at 20 / 50 / 100 steps, dpmpp_2m 46% / 44% / 43% (512 frames;
# docs/experiments.md). The command line and the demo take the middle step count, which measured best.
CONTENT_SAMPLER = "ddpm"
CONTENT_STEPS = 50


@dataclasses.dataclass
class VIDMPipelineOutput:
    """frames: uint8 (B, T, H, W, 3) for "np"/"pt", or scaled latents (B, T, c, h, w) for "latent"."""

    frames: np.ndarray | torch.Tensor


def make_generators(num_videos: int, seed: int | None, generator) -> list[torch.Generator] | torch.Generator:
    """One generator per video from a seed (video i uses seed + i), so results do not depend on batch size."""
    if generator is not None:
        if isinstance(generator, (list, tuple)) and len(generator) != num_videos:
            raise VidmError(f"got {len(generator)} generators for {num_videos} videos")
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
    return [torch.Generator().manual_seed(seed + i) for i in range(num_videos)]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Frames in [-1, 1] (..., C, H, W) -> uint8 (..., H, W, 3); grayscale is repeated to RGB."""
    x = ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    x = x.movedim(-3, -1)
    return x.expand(*x.shape[:-1], 3) if x.shape[-1] == 1 else x


def _check_output_type(output_type: str) -> None:
    if output_type not in ("np", "pt", "latent"):
        raise VidmError(f"output_type must be np, pt or latent, got {output_type!r}")


class VIDMPipeline:
    """Generates videos: z_0 from the content model (or a given frame), then z_k from the motion model."""

    def __init__(self, vae: Autoencoder, content: ContentModel, motion: MotionModel):
        latent = vae.config.latent_channels
        for name, model in (("content", content), ("motion", motion)):
            if model.config.unet.in_channels != latent:
                raise VidmError(f"{name} model works on {model.config.unet.in_channels} latent channels, "
                                f"the VAE makes {latent}")
        self.vae, self.content, self.motion = vae.eval(), content.eval(), motion.eval()
        # channels_last weights let oneDNN (CPU) and cuDNN (GPU) run convolutions without layout reorders:
        # about 10% faster generation on the CPU (docs/experiments.md); saving writes contiguous tensors.
        for model in (self.vae, self.content, self.motion):
            model.to(memory_format=torch.channels_last)

    # --- files ---

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "VIDMPipeline":
        folder = Path(folder)
        if not folder.is_dir():
            raise VidmError(f"model folder not found: {folder}")
        missing = [s for s in STAGES if not (folder / s).is_dir()]
        if missing:
            raise VidmError(f"{folder}: not a vidm model folder (missing {', '.join(missing)}/)")
        vae = load_model(folder / "vae", "autoencoder", device)
        content = load_model(folder / "content", "content", device)
        motion = load_model(folder / "motion", "motion", device)
        return cls(vae, content, motion)

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Writes vae/, content/ and motion/ into a temporary folder, then moves it into place."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name, model in zip(STAGES, (self.vae, self.content, self.motion)):
                save_model(model, tmp / name, dtype)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    def to(self, device) -> "VIDMPipeline":
        for model in (self.vae, self.content, self.motion):
            model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def resolution(self) -> int:
        return self.vae.config.resolution

    @property
    def channels(self) -> int:
        return self.vae.config.in_channels

    # --- generation ---

    def fit_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (..., H, W, C) of any size -> float (..., C, h, w) in [0, 1] at the model's resolution
        and channels, by the fit_frames rule."""
        lead = frames.shape[:-3]
        fitted = fit_frames(frames.reshape(-1, *frames.shape[-3:]), self.resolution, self.channels)
        x = torch.from_numpy(fitted).to(self.device).permute(0, 3, 1, 2).float() / 255
        return x.reshape(*lead, *x.shape[1:])

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (..., H, W, C) of any size -> scaled latents (..., c, h, w), by the fit_frames rule."""
        with torch.inference_mode():
            return self.vae.encode(self.fit_frames(frames) * 2 - 1)

    def stream(self, num_videos: int = 1, num_frames: int = 16, first_frame=None, context=None,
               num_inference_steps: int | None = None, sampler: str = "dpmpp_2m", generator=None,
               seed: int | None = None, labels=None, output_type: str = "np", progress: bool = False,
               content_steps: int | None = None, temperature: float | None = None,
               content_sampler: str = CONTENT_SAMPLER) -> Iterator:
        """Yields the video one time step at a time: (B, H, W, 3) uint8, or (B, c, h, w) latents.

        Memory stays flat however long the video: only z_0 and the last K (context_frames) latents are kept.
        With `context` (a clip), yields `num_frames` new frames that continue it; otherwise yields
        `num_frames` frames starting with the first frame (generated, or the given `first_frame`).
        `num_inference_steps` is per frame (default: the motion model's sample_steps; 0 gives a layered
        model's composite alone); `content_steps` (default: the same) is for the generated first frame
        alone, which is made once per video and, unlike the next ones, from nothing but noise;
        `content_sampler` draws it (default ancestral "ddpm", see CONTENT_SAMPLER), `sampler` the next ones.
        `temperature` scales the noise each next frame starts from (default: the motion model's
        sample_temperature); below 1 keeps frames nearer a layered model's mean.
        Bad arguments raise here, before the first frame is asked for.
        """
        _check_output_type(output_type)
        steps = self.steps_per_frame(num_inference_steps)
        self._check(num_videos, num_frames, self._content_steps(steps, content_steps), temperature)
        get_sampler(sampler)
        get_sampler(content_sampler)
        return self._frames(self._latents(num_videos, num_frames, first_frame, context, num_inference_steps,
                                          sampler, generator, seed, labels, progress, content_steps, temperature,
                                          content_sampler), output_type)

    def _frames(self, latents: Iterator[torch.Tensor], output_type: str) -> Iterator:
        for latent in latents:
            if output_type == "latent":
                yield latent
                continue
            with torch.inference_mode():
                frame = to_uint8(self.vae.decode(latent)).cpu()
            yield frame.numpy() if output_type == "np" else frame

    def __call__(self, num_videos: int = 1, num_frames: int = 16, first_frame=None, context=None,
                 num_inference_steps: int | None = None, sampler: str = "dpmpp_2m", generator=None,
                 seed: int | None = None, labels=None, output_type: str = "np",
                 progress: bool = False, content_steps: int | None = None,
                 temperature: float | None = None, content_sampler: str = CONTENT_SAMPLER) -> VIDMPipelineOutput:
        """Generates whole videos; see `stream` for the arguments. Decodes all frames in one batch."""
        _check_output_type(output_type)
        latents = torch.stack(list(self._latents(num_videos, num_frames, first_frame, context,
                                                 num_inference_steps, sampler, generator, seed, labels,
                                                 progress, content_steps, temperature, content_sampler)),
                              dim=1)  # (B, T, c, h, w)
        if output_type == "latent":
            return VIDMPipelineOutput(latents)
        with torch.inference_mode():
            frames = to_uint8(self.vae.decode(latents)).cpu()  # (B, T, H, W, 3)
        return VIDMPipelineOutput(frames.numpy() if output_type == "np" else frames)

    def steps_per_frame(self, num_inference_steps: int | None = None) -> int:
        """The motion model's denoising steps per frame: as given, else its config's sample_steps."""
        steps = self.motion.config.sample_steps if num_inference_steps is None else num_inference_steps
        if not isinstance(steps, (int, np.integer)) or steps < 0:
            raise VidmError(f"num_inference_steps must be a positive integer, got {steps!r}")
        if steps == 0 and self.motion.layers is None:
            raise VidmError("num_inference_steps must be at least 1 for a motion model without layers (0 gives a "
                            "layered model's composite alone)")
        return int(steps)

    @staticmethod
    def _content_steps(steps, content_steps):
        """The first frame's steps: as given, else those of the next frames (20 when those are 0, a layered
        model's composite, which the content model does not have)."""
        return (steps or 20) if content_steps is None else content_steps

    @staticmethod
    def _check(num_videos, num_frames, content_steps, temperature=None):
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not temperature >= 0):
            raise VidmError(f"temperature must be a number of at least 0, got {temperature!r}")
        for name, value in (("num_videos", num_videos), ("num_frames", num_frames), ("content_steps", content_steps)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise VidmError(f"{name} must be a positive integer, got {value!r}")

    def _as_batch(self, frames, num_videos: int, ndim: int, name: str) -> np.ndarray:
        """An image (H, W, C) or clip (T, H, W, C), or a batch of them, as a batch of num_videos."""
        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim == ndim - 1 and ndim == 4 and frames.shape[-1] not in (1, 3, 4):
            frames = frames[..., None]  # grayscale without a channel axis
        if frames.ndim == ndim - 1:
            frames = np.broadcast_to(frames[None], (num_videos, *frames.shape))
        if frames.ndim != ndim or frames.shape[0] != num_videos:
            one = "(T, H, W, C)" if ndim == 5 else "(H, W, C)"
            raise VidmError(f"{name}: expected shape {one} or ({num_videos}, {one[1:]}, got {frames.shape}")
        if 0 in frames.shape:
            raise VidmError(f"{name}: empty (shape {frames.shape})")
        if frames.dtype != np.uint8:
            raise VidmError(f"{name}: expected uint8 frames, got {frames.dtype}")
        return frames

    @torch.inference_mode()
    def _latents(self, num_videos, num_frames, first_frame, context, steps, sampler_name, generator, seed,
                 labels, progress, content_steps=None, temperature=None,
                 content_sampler: str = CONTENT_SAMPLER) -> Iterator[torch.Tensor]:
        steps = self.steps_per_frame(steps)
        content_steps = self._content_steps(steps, content_steps)
        self._check(num_videos, num_frames, content_steps, temperature)
        sampler, first_sampler = get_sampler(sampler_name), get_sampler(content_sampler)
        gens = make_generators(num_videos, seed, generator)
        num_classes = self.content.config.unet.num_classes
        if num_classes and labels is None:
            raise VidmError(f"this model is class-conditional ({num_classes} classes): pass class labels")
        if labels is not None:
            labels = torch.as_tensor(labels, device=self.device).long().expand(num_videos)
            if num_classes == 0 or labels.min() < 0 or labels.max() >= num_classes:
                raise VidmError(f"labels must lie in [0, {num_classes}) for this model")
        shape = (num_videos, *self.vae.latent_shape())
        device = self.device
        bar = tqdm(total=(num_frames - 1) * steps + (steps if context is not None else content_steps),
                   desc="generating", unit="step", disable=not progress)
        tick = lambda: bar.update(1)  # noqa: E731

        if context is not None:
            clip = self.fit_frames(self._as_batch(context, num_videos, 5, "context"))  # (B, Tc, C, H, W)
            z_clip = self.vae.encode(clip * 2 - 1)  # (B, Tc, c, h, w)
            z0, past, start, end = z_clip[:, 0], list(z_clip.unbind(1)), clip.shape[1], clip.shape[1] + num_frames
        else:
            if first_frame is not None:
                clip = self.fit_frames(self._as_batch(first_frame, num_videos, 4, "first_frame"))[:, None]
                z0 = self.vae.encode(clip[:, 0] * 2 - 1)
                bar.update(content_steps)
            else:
                content = self.content.denoiser(labels)
                z0 = first_sampler(content, randn_like(torch.empty(shape, device=device), gens),
                             self.content.diffusion.alphas_cumprod, content_steps, gens, progress=tick)
                clip = ((self.vae.decode(z0) + 1) / 2).clamp(0, 1)[:, None] if self.motion.layers else None
            yield z0
            past, start, end = [z0], 1, num_frames
        layers = LayeredState.cut(clip, self.motion.layers) if self.motion.layers is not None else None
        # The temperature scales the layers' motion noise as it scales the residual's: 0.3 against 1 took the
        # composite's 10 -> 10 MSE from 141 to 118 (docs/experiments.md).
        motion_temperature = self.motion.config.sample_temperature if temperature is None else temperature
        # The last K latents, oldest first (before frame 0: frame 0, as training clamps); memory stays flat in
        # the video's length.
        K = self.motion.config.context_frames
        history = [past[0]] * max(K - len(past), 0) + past[-K:]

        for k in range(start, end):
            index = torch.full((num_videos,), k, device=device, dtype=torch.long)
            context_latents = torch.stack(history, dim=1)  # (B, K, c, h, w)
            mean = None
            if layers is not None:  # the layers move on; their composite is the mean the residual corrects
                mean = self.vae.encode(layers.step(gens, motion_temperature) * 2 - 1)
            z = self.motion.sample(sampler, steps, z0, context_latents, index, labels, gens, progress=tick,
                                   temperature=temperature, mean=mean)
            yield z
            history = history[1:] + [z]
        bar.close()
