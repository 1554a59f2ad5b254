"""Typed model configs, saved as config.json beside model.safetensors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .atomic import atomic_path
from .errors import VidmError

T = TypeVar("T")


@dataclasses.dataclass
class AutoencoderConfig:
    in_channels: int = 1
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64, 64)  # one entry per resolution; len-1 halvings
    blocks_per_level: int = 1
    resolution: int = 64
    # Multiplies latents so they have unit std for diffusion; measured on data after training.
    scale_factor: float = 1.0


@dataclasses.dataclass
class UNetConfig:
    in_channels: int = 4  # channels of the noisy latent
    cond_channels: int = 0  # channels of conditioning latents concatenated to the input
    out_channels: int = 4
    channels: tuple[int, ...] = (64, 128, 128)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (1, 2)
    heads: int = 4
    embed_dim: int = 128
    num_classes: int = 0  # 0: unconditional
    # Positional group norm: per-pixel scale/shift from sinusoidal row/column features.
    positional_norm: bool = True
    dropout: float = 0.0


@dataclasses.dataclass
class DiffusionConfig:
    schedule: str = "cosine"  # "linear" | "cosine"
    num_train_steps: int = 1000
    prediction: str = "v"  # "eps" | "v"
    p2_gamma: float = 0.0  # P2 weighting (Choi et al. 2022); 0 disables it
    p2_k: float = 1.0


@dataclasses.dataclass
class ContentConfig:
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = dataclasses.field(default_factory=DiffusionConfig)


@dataclasses.dataclass
class LayersConfig:
    """The layered predictor (vidm.layers, vidm.layer_motion): objects cut from a reference frame's ink, each
    moved by a translation that a small diffusion model samples from its track, composited in pixel space."""

    num_layers: int = 2  # objects cut from the reference frame, one layer each
    resolution: int = 64  # of the frames (the VAE's); extents enter the motion model relative to it
    composite: str = "max"  # "max" (Moving MNIST is drawn so) or "over" (layer 0 in front: occluding scenes)
    threshold: float = 0.25  # ink above this fraction of full brightness makes an object
    min_pixels: int = 20  # smaller components are no object; their ink joins the nearest layer
    track_frames: int = 10  # offsets of the last N frames the motion model sees (10: all of a 10-frame context)
    hidden: int = 256  # width of its MLP
    depth: int = 3  # linear layers of its MLP before the output
    motion_steps: int = 8  # DDIM steps that sample each frame's displacements
    register_window: int = 6  # pixels a layer is searched around its last offset in real frames
    # The motion MLP learns at this multiple of the stage's lr: it is small, sees thousands of tracks a step,
    # and at the UNet's lr it needed about 3 times the steps to reach the same error (docs/experiments.md).
    lr_scale: float = 3.0


@dataclasses.dataclass
class MotionConfig:
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = dataclasses.field(default_factory=DiffusionConfig)
    context_frames: int = 2  # K: previous latents the next frame is conditioned on
    # Frame index k enters as k / max_frames in training and sampling alike; later frames clamp.
    max_frames: int = 64
    # Conditioning noise augmentation: training draws a level in [0, max], sampling uses a fixed one.
    aug_max_level: float = 0.3
    aug_sample_level: float = 0.05
    # A layered model (`layers`) generates the residual from its mean mu, (z_k - mu) / residual_scale (RVD,
    # Yang et al. 2022).
    residual_scale: float = 0.5
    # Scales the noise each frame's sampling starts from (the default of `temperature` in the pipeline and
    # the CLI). Below 1 keeps a frame nearer a layered model's mean: fewer invented strokes to compound into
    # another shape, at some loss of variety; 0 is the deterministic path from zero noise.
    sample_temperature: float = 1.0
    # Steps per frame when the caller gives none; a layered model's composite needs none, 0 samples the
    # composite alone.
    sample_steps: int = 20
    # The layered predictor: z_k's mean mu is the encoded composite of the moved layers. None: the diffusion
    # model generates z_k itself.
    layers: LayersConfig | None = None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict) -> T:
    """Build a (nested) config dataclass, rejecting unknown keys with a clear error."""
    if not isinstance(data, dict):
        raise VidmError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = without_retired(cls, data)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise VidmError(f"{cls.__name__}: unknown keys {unknown}")
    kwargs = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in data.items():
        sub = _CONFIG_TYPES.get(hints[name].removesuffix(" | None"))
        if sub is not None and value is not None:
            value = from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# Options of the deleted UNet-predictor motion design (a predictor UNet, memory latents, reference attention):
# model folders saved before then hold them switched off, and load as they did.
RETIRED = {"UNetConfig": {"reference_levels": (), "reference_channels": 0},
           "MotionConfig": {"predictor": None, "memory_offsets": ()}}


def without_retired(cls: type, data: dict) -> dict:
    """`data` without the retired options it holds switched off; one switched on is a clear error."""
    retired = RETIRED.get(cls.__name__, {})
    for name in sorted(set(data) & set(retired)):
        value = data[name]
        if (tuple(value) if isinstance(value, list) else value) != retired[name]:
            raise VidmError(f"{cls.__name__}: {name} is an option of the deleted UNet-predictor motion model, "
                            "which this version cannot load")
    return {k: v for k, v in data.items() if k not in retired}


_CONFIG_TYPES = {
    "UNetConfig": UNetConfig,
    "DiffusionConfig": DiffusionConfig,
    "AutoencoderConfig": AutoencoderConfig,
    "LayersConfig": LayersConfig,
}


def save_json(data: dict, path: Path) -> None:
    """Write JSON atomically: a temporary name, then rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def load_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VidmError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VidmError(f"{path}: not valid JSON ({e})") from None
