"""Model folders: config.json (typed config) + model.safetensors, loaded strictly, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_path
from .autoencoder import Autoencoder
from .config import AutoencoderConfig, ContentConfig, MotionConfig, from_dict, load_json, save_json, to_dict
from .content_model import ContentModel
from .errors import VidmError
from .motion_model import MotionModel

KINDS = {
    "autoencoder": (Autoencoder, AutoencoderConfig),
    "content": (ContentModel, ContentConfig),
    "motion": (MotionModel, MotionConfig),
}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def kind_of(model: nn.Module) -> str:
    for kind, (cls, _) in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a vidm model: {type(model).__name__}")


def build(kind: str, config: dict) -> nn.Module:
    if kind not in KINDS:
        raise VidmError(f"unknown model kind {kind!r}: choose from {sorted(KINDS)}")
    cls, cfg_cls = KINDS[kind]
    return cls(from_dict(cfg_cls, config))


def save_model(model: nn.Module, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    """Writes folder/config.json and folder/model.safetensors, each via a temporary name.

    `dtype` (e.g. torch.float16) stores floating-point weights smaller; loading casts them back.
    A model's `trained` record (the step and CPU-hours of the run that made it, see train.py) is kept in
    config.json, so that exported weights can continue their run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype if dtype is not None and v.is_floating_point() else v.dtype)
               .contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp))
    record = getattr(model, "trained", None)
    save_json({"kind": kind_of(model), "config": to_dict(model.config)} | ({"trained": record} if record else {}),
              folder / CONFIG_NAME)


def state_dict_mismatch(expected: dict, state: dict, optional: tuple[str, ...] = ()) -> str:
    """'' when `state` fits `expected` exactly, else a short account of missing, extra and misshapen keys.

    Keys ending in one of `optional` may be absent.
    """
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(optional))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    return "; ".join(f"{name}: {len(keys)} (e.g. {keys[0]})" for name, keys in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)


def load_model(folder: str | os.PathLike, kind: str | None = None, device="cpu") -> nn.Module:
    """Loads a model folder strictly; any missing file or mismatch is a one-line VidmError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VidmError(f"model folder not found: {folder}")
    meta = load_json(folder / CONFIG_NAME)
    if not isinstance(meta, dict) or "kind" not in meta or "config" not in meta:
        raise VidmError(f"{folder / CONFIG_NAME}: expected keys 'kind' and 'config'")
    if kind is not None and meta["kind"] != kind:
        raise VidmError(f"{folder}: holds a {meta['kind']} model, expected {kind}")
    try:
        model = build(meta["kind"], meta["config"])
    except (TypeError, ValueError) as e:
        raise VidmError(f"{folder / CONFIG_NAME}: invalid config ({e})") from None
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise VidmError(f"missing file: {weights}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise VidmError(f"{weights}: unreadable weights ({e})") from None
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise VidmError(f"{folder}: config.json does not match model.safetensors ({mismatch})")
    model.load_state_dict(state, strict=True)
    model.trained = meta.get("trained")
    return model.to(device).eval()
