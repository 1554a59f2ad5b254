"""Motion model: diffusion over z_k given the first latent z_0, the previous K latents and k.

Optionally (config `predictor`) a deterministic predictor first guesses z_k's mean mu, and the diffusion
model generates only the residual (RVD, Yang, Srivastava & Mandt 2022): the predictor learns the motion
fast with a plain MSE, and the diffusion model adds what a mean cannot have (sharp strokes). Sampling it
from noise scaled below 1 (`sample_temperature`) keeps a frame nearer that mean, so the residual invents
fewer strokes that later frames would build on.
"""
from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import nn

from .config import MotionConfig
from .diffusion import Diffusion, training_loss
from .errors import VidmError
from .layer_motion import LayerMotion
from .sampling import randn_like
from .unet import UNet


def context_offsets(cfg: MotionConfig) -> tuple[int, ...]:
    """See MotionModel.context_offsets."""
    return tuple(range(cfg.context_frames, 0, -1)) + tuple(cfg.memory_offsets)


class MotionModel(nn.Module):
    """Conditioning latents are concatenated to the noisy input:
    [x noisy, z_0, z_{k-K}, ..., z_{k-1}(, mu)(, z_{k-o} for each memory offset o)]."""

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        if cfg.context_frames < 1:
            raise VidmError(f"context_frames must be at least 1, got {cfg.context_frames}")
        K, M = cfg.context_frames, len(cfg.memory_offsets)
        if any(not isinstance(o, int) or o <= K for o in cfg.memory_offsets) or M != len(set(cfg.memory_offsets)):
            raise VidmError(f"memory_offsets must be distinct integers above context_frames ({K}), "
                            f"got {list(cfg.memory_offsets)}")
        c = cfg.unet.in_channels
        stacked = c * (1 + K + M)  # z_0, the K context latents and the memory latents
        if cfg.predictor is not None and cfg.layers is not None:
            raise VidmError("motion: choose one predictor kind, `predictor` (a UNet) or `layers`, not both")
        has_mean = cfg.predictor is not None or cfg.layers is not None
        expected = c * (1 + K) + (c if has_mean else 0) + c * M
        if cfg.unet.cond_channels != expected:
            raise VidmError(f"motion unet.cond_channels must be {expected} (first frame + {K} context latents"
                            f"{' + the prediction' if has_mean else ''}"
                            f"{f' + {M} memory latents' if M else ''}), got {cfg.unet.cond_channels}")
        p = cfg.predictor
        if p is not None and (p.in_channels != stacked or p.out_channels != c or p.cond_channels != 0):
            raise VidmError(f"motion predictor: in_channels must be {stacked}, out_channels {c} and "
                            f"cond_channels 0, got {p.in_channels}, {p.out_channels}, {p.cond_channels}")
        if not cfg.sample_temperature >= 0:
            raise VidmError(f"sample_temperature must be at least 0, got {cfg.sample_temperature}")
        if cfg.residual_scale <= 0:
            raise VidmError(f"residual_scale must be positive, got {cfg.residual_scale}")
        self.config = cfg
        # Scalars: diffusion time, frame position, conditioning augmentation level.
        self.unet = UNet(cfg.unet, num_scalars=3, num_references=1)
        # Scalars: frame position, conditioning augmentation level.
        self.predictor = UNet(p, num_scalars=2, num_references=1) if p is not None else None
        self.layers = LayerMotion(cfg.layers) if cfg.layers is not None else None
        self.diffusion = Diffusion(cfg.diffusion)

    @property
    def context_offsets(self) -> tuple[int, ...]:
        """How many frames back each context latent is, in the order `context` holds them: K .. 1 (oldest
        first), then the memory offsets."""
        return context_offsets(self.config)

    def frame_position(self, frame_index: torch.Tensor) -> torch.Tensor:
        """Frame index k -> k / max_frames, the same in training and sampling.

        Training sees k = 1 .. max_frames - 1 at most, so later frames take the last trained position.
        """
        return frame_index.float().clamp(max=self.config.max_frames - 1) / self.config.max_frames

    def augment(self, context: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Variance-preserving noise on the context latents (B, K, c, h, w), so the model learns to trust them
        less. Every way into the model (training, sampling) passes its context through here."""
        level = level.view(-1, *([1] * (context.dim() - 1)))
        return (1 - level.square()).sqrt() * context + level * noise

    @staticmethod
    def references(first: torch.Tensor) -> torch.Tensor:
        """The reference latents (B, 1, c, h, w) of reference attention: z_0 alone (z_{k-1} is on the input
        channels already, where convolutions see a one-pixel move)."""
        return first[:, None]

    def predict(self, first, context, frame_index, aug_level, labels=None) -> torch.Tensor:
        """The predictor's mean of z_k (B, c, h, w): z_{k-1} plus a predicted correction."""
        x = torch.cat([first, rearrange(context, "b k c h w -> b (k c) h w")], dim=1)
        scalars = torch.stack([self.frame_position(frame_index), aug_level], dim=1)
        reference = self.predictor.encode_reference(self.references(first))
        return context[:, self.config.context_frames - 1] + self.predictor(x, scalars, labels=labels,
                                                                           reference=reference)

    def forward(self, x_t, t, first, context, frame_index, aug_level, labels=None, mean=None,
                reference=None) -> torch.Tensor:
        """x_t, first (B, c, h, w); context (B, K + M, c, h, w) in context_offsets order, already augmented;
        frame_index, aug_level (B,);
        mean: the predictor's output (with a predictor); reference: from encode_reference (or made here)."""
        K = self.config.context_frames
        parts = [first, rearrange(context[:, :K], "b k c h w -> b (k c) h w")] + ([mean] if mean is not None else [])
        if context.shape[1] > K:  # memory latents last, where a warm start added them
            parts.append(rearrange(context[:, K:], "b k c h w -> b (k c) h w"))
        scalars = torch.stack([self.diffusion.time_input(t), self.frame_position(frame_index), aug_level], dim=1)
        if reference is None and self.unet.reference_encoder is not None:
            reference = self.unet.encode_reference(self.references(first))
        return self.unet(x_t, scalars, cond=torch.cat(parts, dim=1), labels=labels, reference=reference)

    def loss(self, target, first, context, frame_index, t, noise, aug_level, aug_noise, labels=None, mean=None):
        """Training loss for z_k = target with the given random draws (see train.py); with layers, `mean` is
        the encoded composite the layers made (their motion model's loss is the stage's to add)."""
        context = self.augment(context, aug_level, aug_noise)
        extra = 0.0
        x0 = target
        if self.layers is not None:
            if mean is None:
                raise VidmError("a layered motion model's loss needs the layers' composite as `mean`")
            x0 = (target - mean) / self.config.residual_scale
        elif self.predictor is not None:
            mean = self.predict(first, context, frame_index, aug_level, labels)
            extra = (mean - target).pow(2).mean()
            # The diffusion model's gradient does not reach the predictor: each has one clear target.
            mean = mean.detach()
            x0 = (target - mean) / self.config.residual_scale
        net = lambda x, tt: self(x, tt, first, context, frame_index, aug_level, labels, mean)  # noqa: E731
        return training_loss(self.diffusion, net, x0, t, noise) + extra

    def sample(self, sampler: Callable, steps: int, first, context, frame_index, labels=None, generator=None,
               progress: Callable | None = None, temperature: float | None = None, mean=None) -> torch.Tensor:
        """z_k (B, c, h, w) by `sampler` in `steps` network calls, context augmented at the fixed sampling level.

        The starting noise is scaled by `temperature` (default: the config's sample_temperature).

        The predictor and the reference tokens are computed once per frame, not once per denoising step.
        With a predictor, `steps` 0 gives its mean alone: deterministic, one network call per frame. With
        layers, the caller gives the mean (the encoded composite of the moved layers, vidm.layered).
        """
        if (self.layers is not None) != (mean is not None):
            raise VidmError("a layered motion model samples from the layers' composite (`mean`), no other does")
        level = torch.full((first.shape[0],), self.config.aug_sample_level, device=first.device)
        context = self.augment(context, level, randn_like(context, generator))
        noise = randn_like(first, generator)  # drawn after the augmentation noise, per video generator
        noise = noise * (self.config.sample_temperature if temperature is None else temperature)
        if self.predictor is not None:
            mean = self.predict(first, context, frame_index, level, labels)
        if steps == 0 and mean is not None:
            return mean
        return self.denoise_from(noise, sampler, steps, first, context, frame_index, level, mean, labels, generator,
                                 progress)

    def denoise_from(self, noise, sampler: Callable, steps: int, first, context, frame_index, level, mean=None,
                     labels=None, generator=None, progress: Callable | None = None) -> torch.Tensor:
        """z_k from starting noise (already scaled by the temperature), the augmented context at `level` and,
        with a predictor, its mean: the denoising half of `sample`."""
        reference = self.unet.encode_reference(self.references(first))

        def denoise(x, t):
            return self.diffusion.split(x, t, self(x, t, first, context, frame_index, level, labels, mean, reference))

        x = sampler(denoise, noise, self.diffusion.alphas_cumprod, steps, generator, progress=progress)
        return x if mean is None else mean + self.config.residual_scale * x
