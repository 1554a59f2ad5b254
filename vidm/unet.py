"""Denoiser backbone: a UNet whose GroupNorms are modulated by position (VIDM's positional group norm).

VIDM replaces the global timestep embedding with "positional group normalization": every GroupNorm
gets a scale and shift computed from sinusoidal features of the diffusion time, the frame index and
the pixel's row and column. Here the scalar part (time, frame index, augmentation level) goes through
an MLP to a per-channel scale/shift, and the row/column part through a 1x1 convolution to a per-pixel
one; their sum modulates the normalised features. Both start at zero, so training begins from plain
GroupNorm.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import UNetConfig

POS_FREQS = 4  # sinusoidal frequencies per axis for row/column features


def num_groups(channels: int) -> int:
    """GroupNorm groups: 32 where the channel count allows (Wu & He 2018), else the largest divisor."""
    return math.gcd(32, channels)


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Scalars in [0, 1] (B,) -> (B, dim) features (Vaswani et al. 2017, scaled by 1000 like DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = 1000.0 * x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


@functools.lru_cache(maxsize=32)
def coordinate_features(h: int, w: int, device, dtype) -> torch.Tensor:
    """Sinusoidal features of row and column, (1, 4 * POS_FREQS, h, w); constant, so made once per size."""
    # Made outside inference mode: the cached tensor is shared with training, which needs autograd.
    with torch.inference_mode(False):
        rows = torch.linspace(0, 1, h, device=device)[:, None].expand(h, w)
        cols = torch.linspace(0, 1, w, device=device)[None, :].expand(h, w)
        freqs = math.pi * 2.0 ** torch.arange(POS_FREQS, device=device)
        feats = []
        for grid in (rows, cols):
            angles = grid[None] * freqs[:, None, None]
            feats += [torch.sin(angles), torch.cos(angles)]
        return torch.cat(feats)[None].to(dtype)


class PositionalGroupNorm(nn.Module):
    """GroupNorm with scale/shift from the conditioning embedding and, optionally, pixel position."""

    # The per-pixel term depends only on the weights and the feature-map size, so at inference (no
    # autograd) it is computed once and reused by every denoising step and frame.
    cache_position = True

    def __init__(self, channels: int, embed_dim: int, positional: bool):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, affine=False)
        self.from_embedding = nn.Linear(embed_dim, 2 * channels)
        self.from_position = nn.Conv2d(4 * POS_FREQS, 2 * channels, 1) if positional else None
        for layer in (self.from_embedding, self.from_position):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self._position_key = None
        self._position = None

    def position_modulation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel (scale, shift) from row/column features, each (1, C, h, w)."""
        h, w = x.shape[-2:]
        conv = self.from_position
        if torch.is_grad_enabled() or not self.cache_position:
            return conv(coordinate_features(h, w, x.device, x.dtype)).chunk(2, dim=1)
        # Version counters and storage change when weights are loaded, trained or moved: the cache follows.
        key = (h, w, x.device, x.dtype, conv.weight._version, conv.weight.data_ptr(), conv.bias._version,
               conv.bias.data_ptr())
        if key != self._position_key:
            pos = conv(coordinate_features(h, w, x.device, x.dtype))
            self._position = tuple(t.contiguous() for t in pos.chunk(2, dim=1))
            self._position_key = key
        return self._position

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.from_embedding(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1)
        if self.from_position is not None:
            pos_scale, pos_shift = self.position_modulation(x)
            scale, shift = scale + pos_scale, shift + pos_shift
        # one fused multiply-add over the feature map: norm(x) * (1 + scale) + shift
        return torch.addcmul(shift, self.norm(x), 1 + scale)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, embed_dim: int, positional: bool, dropout: float):
        super().__init__()
        self.norm1 = PositionalGroupNorm(cin, embed_dim, positional)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = PositionalGroupNorm(cout, embed_dim, positional)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x, emb)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h, emb))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the pixels of one feature map."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(num_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, emb=None):
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three n c) h w -> three b n (h w) c", three=3, n=self.heads)
        o = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(o, "b n (h w) c -> b (n c) h w", h=h, w=w))


class UNet(nn.Module):
    """ADM-style UNet: input = noisy latent with conditioning latents concatenated on channels."""

    def __init__(self, cfg: UNetConfig, num_scalars: int = 1):
        super().__init__()
        self.config = cfg
        self.num_scalars = num_scalars  # diffusion time first, then model-specific scalars
        e = cfg.embed_dim
        self.embed = nn.Sequential(nn.Linear(num_scalars * e, e), nn.SiLU(), nn.Linear(e, e))
        self.label_embed = nn.Embedding(cfg.num_classes, e) if cfg.num_classes > 0 else None
        block = lambda cin, cout: ResBlock(cin, cout, e, cfg.positional_norm, cfg.dropout)  # noqa: E731

        ch = cfg.channels
        attention = lambda c, level: [Attention(c, cfg.heads)] if level in cfg.attention_levels else []  # noqa: E731

        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch[0]]
        cur = ch[0]
        for level, c in enumerate(ch):
            for _ in range(cfg.blocks_per_level):
                self.down.append(nn.ModuleList([block(cur, c), *attention(c, level)]))
                cur = c
                skips.append(cur)
            if level < len(ch) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
        self.mid = nn.ModuleList([block(cur, cur), Attention(cur, cfg.heads), block(cur, cur)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch))):
            c = ch[level]
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(nn.ModuleList([block(cur + skips.pop(), c), *attention(c, level)]))
                cur = c
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(cur, cur, 3, padding=1)]))
        self.norm_out = nn.GroupNorm(num_groups(cur), cur)
        self.conv_out = nn.Conv2d(cur, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embedding(self, scalars: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scalars (B, num_scalars) in [0, 1] and optional class labels (B,) -> (B, embed_dim)."""
        e = self.config.embed_dim
        feats = torch.cat([sinusoidal(scalars[:, i], e) for i in range(self.num_scalars)], dim=1)
        emb = self.embed(feats)
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("this model is class-conditional: pass class labels")
            emb = emb + self.label_embed(labels)
        return emb

    def forward(self, x: torch.Tensor, scalars: torch.Tensor, cond: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, c, h, w); scalars (B, num_scalars); cond (B, cond_channels, h, w) or None."""
        emb = self.embedding(scalars, labels)

        def apply(layer, h):
            return layer(h, emb) if isinstance(layer, (ResBlock, Attention)) else layer(h)

        if cond is not None:
            x = torch.cat([x, cond], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for layers in self.down:
            for layer in layers:
                h = apply(layer, h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            for layer in layers:
                h = apply(layer, h)
        return self.conv_out(F.silu(self.norm_out(h)))
