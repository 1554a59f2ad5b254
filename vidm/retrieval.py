"""First-frame retrieval: the motion predictor's mean fetches its strokes from the clean first latent.

The predictor's mean of z_k is right about where things are but, like any mean, blurred; errors then
compound frame by frame and a digit drifts into another shape. Objects in these videos keep their look,
so every latent pixel of the mean can instead fetch the pixel of z_0 whose surroundings look most alike:
one softmax attention over z_0's pixels, keyed by a small convolutional descriptor shared by both sides
(even untrained, a shared random descriptor ranks alike patches high). The values are z_0's own latent
pixels, so what comes out is first-frame content, moved. A learned per-pixel gate mixes it into the mean,
where fetching is right (a moving digit), and keeps the mean where it is not (two digits crossing, content
that was not in z_0).

Measured (docs/experiments.md): after 1,750 steps it kept digits no better than the predictor alone; each
pixel picks its source on its own, so strokes are not moved together as one object. An option, off in the
recipe.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import RetrievalConfig


class FirstFrameRetrieval(nn.Module):
    def __init__(self, cfg: RetrievalConfig, latent_channels: int):
        super().__init__()
        layers, width = [], latent_channels
        for _ in range(cfg.layers):
            layers += [nn.Conv2d(width, cfg.channels, 3, padding=1), nn.SiLU()]
            width = cfg.channels
        layers.append(nn.Conv2d(width, cfg.channels, 1))
        self.describe = nn.Sequential(*layers)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.temperature)))
        # Sees the mean and the fetched latent; zero weights: the same opening everywhere at first.
        self.gate = nn.Conv2d(2 * latent_channels, 1, 3, padding=1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, cfg.gate_bias)

    def fetch(self, query: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """For each pixel of `query` (B, c, h, w), the softmax-weighted pixels of `first` that look alike."""
        q, k = self.describe(query).flatten(2), self.describe(first).flatten(2)  # (B, d, N)
        # Centred on z_0's average descriptor, so the similarity ranks what differs between pixels, not what
        # every descriptor shares (a convolution's biases make all pixels look alike to cosine similarity).
        centre = k.mean(dim=2, keepdim=True)
        q, k = F.normalize(q - centre, dim=1), F.normalize(k - centre, dim=1)
        weights = (torch.einsum("bdn,bdm->bnm", q, k) * self.log_temperature.exp()).softmax(dim=-1)
        return torch.einsum("bnm,bcm->bcn", weights, first.flatten(2)).view_as(query)

    def forward(self, mean: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the mean with fetched content gated in, the fetched latent alone), both (B, c, h, w)."""
        fetched = self.fetch(mean, first)
        gate = torch.sigmoid(self.gate(torch.cat([mean, fetched], dim=1)))
        return mean + gate * (fetched - mean), fetched
