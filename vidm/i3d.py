"""The FVD feature detector: Inception-I3D (Carreira & Zisserman 2017) trained on Kinetics-400.

Two weight files are in use, and both load here behind one interface, `Detector.features`:
- `i3d_torchscript.pt`, StyleGAN-V's TorchScript port of the tf.hub module (Skorokhodov et al. 2022);
- `i3d_pretrained_400.pt`, the same tf.hub weights as a state dict in the InceptionI3d layout of
  VideoGPT's `pytorch_i3d.py`, used by TATS, PVDM and LVDM. `InceptionI3d` below has that layout.
The features are the 400 pre-softmax logits averaged over time. DeepMind's `rgb_imagenet.pt` is a
different network (ImageNet-inflated) and gives numbers that are not comparable.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checkpoint import state_dict_mismatch
from .errors import VidmError

ENV_VAR = "VIDM_I3D"
INPUT_SIZE = 224  # the tf.hub module's input resolution (FVD, Unterthiner et al. 2018)
NUM_CLASSES = 400  # Kinetics-400
# VideoGPT's pytorch_i3d.py, which every user of i3d_pretrained_400.pt runs, uses eps 1e-5 (Sonnet's own
# default is 1e-3); we match the code that produced the published numbers. The file stores no eps.
BN_EPS = 1e-5
MISSING_WEIGHTS = (
    "no I3D weights for FVD: pass --detector FILE or set VIDM_I3D to i3d_torchscript.pt (StyleGAN-V "
    "release, https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt) or i3d_pretrained_400.pt "
    "(from the TATS/PVDM repositories, VideoGPT's I3D download)"
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) for one axis: the extra pixel goes at the back."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pads (B, C, T, H, W) so a valid conv/pool behaves like TF's 'SAME'."""
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    t, h, w = pads
    return F.pad(x, (*w, *h, *t))


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding, then BatchNorm and ReLU (the logits layer: bias, no norm, no ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class MaxPool3dSame(nn.Module):
    """Max pooling with 'SAME' padding; zero padding equals TF's -inf here since inputs follow a ReLU."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1; 1x1->3x3; 1x1->3x3; 3x3 max pool->1x1 (all 3-D)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# Inception-v1 widths per mixed block (Szegedy et al. 2015, table 1), inflated to 3-D by I3D.
MIXED_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """RGB Inception-I3D; input (B, 3, T, 224, 224) in [-1, 1], output (B, 400) logits averaged over time."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in MIXED_WIDTHS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(channels, widths)
            setattr(self, name, block)
            channels = block.out_channels
        # 2x7x7 average pool: 7x7 is the 224 input after 32x downsampling (VideoGPT/tf.hub use a valid pool)
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.logits = Unit3D(channels, num_classes, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self.children())[:-1]:  # every layer before the logits, in registration order
            x = module(x)
        logits = self.logits(x)  # (B, classes, T', 1, 1) at 224x224 input
        return logits.mean(dim=(2, 3, 4))


def preprocess(videos: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, T, H, W) -> float (B, 3, T, 224, 224) in [-1, 1]: the FVD input (StyleGAN-V)."""
    x = videos.float() / 127.5 - 1.0
    if x.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return x
    b = x.shape[0]
    # bilinear per frame is StyleGAN-V's trilinear resize with T unchanged (align_corners=False, no antialias)
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return rearrange(frames, "(b t) c h w -> b c t h w", b=b)


def as_uint8_batch(videos) -> torch.Tensor:
    """uint8 videos (B, T, H, W, C), numpy or torch, C in {1, 3} -> uint8 tensor (B, 3, T, H, W)."""
    x = videos if isinstance(videos, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(videos))
    if x.dtype != torch.uint8:
        raise VidmError(f"FVD needs uint8 videos, got {x.dtype}")
    if x.ndim != 5 or x.shape[-1] not in (1, 3):
        raise VidmError(f"FVD needs videos (B, T, H, W, 1 or 3), got shape {tuple(x.shape)}")
    x = rearrange(x, "b t h w c -> b c t h w")
    return x.repeat(1, 3, 1, 1, 1) if x.shape[1] == 1 else x  # grayscale -> RGB, as StyleGAN-V does


class Detector:
    """An I3D feature extractor under the FVD protocol: uint8 videos in, (B, 400) float64 features out."""

    def __init__(self, net: nn.Module, scripted: bool, name: str, sha256: str | None, device="cpu"):
        self.net = net.eval().to(device)
        self.scripted = scripted
        self.name = name  # the weight file, or a description of random weights
        self.sha256 = sha256
        self.device = torch.device(device)

    @property
    def identity(self) -> str:
        """What the features depend on, for cache keys: the weight file's hash, else its name."""
        return self.sha256 or self.name

    @torch.inference_mode()
    def features(self, videos) -> np.ndarray:
        """uint8 videos (B, T, H, W, C) -> (B, 400) float64 I3D logits."""
        x = as_uint8_batch(videos).to(self.device)
        if self.scripted:
            # StyleGAN-V's call: uint8 in, the TorchScript module scales to [-1, 1] and resizes to 224
            out = self.net(x, rescale=True, resize=True, return_features=True)
        else:
            out = self.net(preprocess(x))
        return out.double().cpu().numpy()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_torchscript(path: Path) -> bool:
    """TorchScript archives hold constants.pkl and code/; torch.save files (zip or legacy) do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def load_state_dict_strict(net: nn.Module, path: Path) -> None:
    """Loads a state dict file into `net`; any missing, extra or misshapen tensor is a VidmError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a state dict
        raise VidmError(f"{path}: not a TorchScript archive or a readable state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VidmError(f"{path}: expected a state dict of tensors (InceptionI3d layout)")
    # files saved by older torch lack num_batches_tracked; BatchNorm fills it in, and eval never reads it
    mismatch = state_dict_mismatch(net.state_dict(), state, optional=("num_batches_tracked",))
    if mismatch:
        raise VidmError(f"{path}: not an InceptionI3d state dict ({mismatch})")
    net.load_state_dict(state, strict=True)


def load_detector(path: str | os.PathLike | None = None, device="cpu") -> Detector:
    """The detector from `path`, else $VIDM_I3D: a TorchScript archive or an InceptionI3d state dict."""
    path = path or os.environ.get(ENV_VAR)
    if not path:
        raise VidmError(MISSING_WEIGHTS)
    path = Path(path).expanduser()
    if not path.is_file():
        raise VidmError(f"{path} not found; {MISSING_WEIGHTS}")
    sha256 = file_sha256(path)
    if is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript, but this file exists only as one
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            raise VidmError(f"{path}: unreadable TorchScript archive ({str(e).splitlines()[0]})") from None
        return Detector(net, scripted=True, name=str(path), sha256=sha256, device=device)
    net = InceptionI3d()
    load_state_dict_strict(net, path)
    return Detector(net, scripted=False, name=str(path), sha256=sha256, device=device)


def random_detector(seed: int = 0, device="cpu") -> Detector:
    """InceptionI3d with random weights drawn from `seed`: for tests and proxy benchmarks only."""
    net = InceptionI3d()
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's random state
        torch.manual_seed(seed)
        for module in net.modules():
            if isinstance(module, nn.Conv3d):
                # He init (He et al. 2015) keeps activations at unit scale through the 60-odd layers;
                # PyTorch's default shrinks them until every video gets nearly the same features
                gain = "linear" if module.bias is not None else "relu"
                nn.init.kaiming_normal_(module.weight, nonlinearity=gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return Detector(net, scripted=False, name=f"random InceptionI3d (seed {seed})", sha256=None, device=device)
