"""Training for the three stages, on the CPU, one GPU, or N processes under torchrun.

Every random number of a step (data order, diffusion steps, noise) is drawn for the whole global
batch from a generator seeded by (seed, step), and each process takes its slice. So a run's result
depends on the global batch, not on how many processes share it, and resuming needs only the step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm import tqdm

from . import dist
from .atomic import atomic_path
from .autoencoder import Autoencoder
from .checkpoint import build, load_model, save_model, state_dict_mismatch
from .config import from_dict, load_json
from .data.sources import DataConfig, open_source
from .errors import VidmError
from .layer_stage import LayerStage
from .precision import resolve as resolve_precision

STAGE_KINDS = {"vae": "autoencoder", "content": "content", "motion": "motion"}
STATE_NAME = "train_state.pt"


@dataclasses.dataclass
class TrainConfig:
    stage: str = "vae"  # vae | content | motion
    out: str = "runs/model"  # pipeline folder; this stage writes out/<stage>/
    model: dict = dataclasses.field(default_factory=dict)  # the stage's model config
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    vae: str = ""  # autoencoder folder for content/motion; default out/vae
    # Warm start: a model folder of the same kind whose weights fill the new model before step 0. The new
    # model may add layers (e.g. attention blocks, which start as the identity); the rest must match.
    init_from: str = ""
    batch_size: int = 32  # global, over all processes and accumulation steps
    accum_steps: int = 1
    steps: int = 2000
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    # "constant" after warm-up, or "cosine": down to lr * min_lr_ratio at the last step (a decayed end
    # often lowers the final loss further than the EMA alone)
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    # Cosine only: 0 decays over the whole run after warm-up; N > 0 holds lr until the last N steps and
    # decays over those (warmup-stable-decay, Hägele et al. 2024): a run in its stable phase can be
    # lengthened without changing the steps it has taken.
    decay_steps: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # ramp the EMA decay up from 0 early on (timm's warmup)
    # The ramp is 1 - (1 + step)^-power, capped at ema_decay: 3/4 reaches 0.999 at 10,000 steps, timm's
    # default 2/3 only at 31,600 (so a 13,000-step run ended at 0.998).
    ema_warmup_power: float = 0.75
    kl_weight: float = 1e-4  # vae only
    # VAE only, a shift-equivariant latent (vidm.equivariance): on random circular shifts of -7..7 px, the
    # latent shifted by s / 4 must decode to the shifted frame (L1, decoder term) and equal the latent of
    # the shifted frame (relative squared error, encoder term). 0 leaves the term out.
    equivariance_weight: float = 0.0
    equivariance_encoder_weight: float = 0.0
    # Stop at the first log line after the processes together have used this much CPU time (hours), so
    # that designs can be compared at equal compute; 0: run all `steps`. The CPU time so far is logged.
    cpu_hours: float = 0.0
    save_every: int = 500
    # Also keep the EMA model of every N-th step in out/<stage>/step-<N>/ (for curves of quality
    # against steps); 0: only the latest. A multiple of save_every.
    snapshot_every: int = 0
    log_every: int = 50
    seed: int = 0
    # "auto": bf16 autocast where the device has bf16 units (GPUs, CPUs with AVX512-BF16 or AMX), float32
    # elsewhere; "bf16" or "float32" to force one. Weights, optimizer and EMA stay float32 either way.
    precision: str = "auto"
    compile: bool = False


def learning_rate(cfg: TrainConfig, step: int, start: int = 0) -> float:
    """Linear warm-up from `start` (0, or the step a run was continued at with a fresh optimizer), then
    constant or a cosine decay to lr * min_lr_ratio at the last step (over the last decay_steps if set)."""
    warm = min(1.0, (step - start + 1) / max(cfg.warmup_steps, 1))
    decay_start = max(cfg.steps - cfg.decay_steps, cfg.warmup_steps) if cfg.decay_steps else cfg.warmup_steps
    if cfg.lr_schedule == "constant" or step < decay_start:
        return cfg.lr * warm
    if warm < 1:  # warming up again inside the decay: towards where the schedule is now
        return warm * learning_rate(cfg, step)
    progress = (step - decay_start) / max(cfg.steps - 1 - decay_start, 1)
    low = cfg.min_lr_ratio
    return cfg.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def load_train_config(path: str) -> TrainConfig:
    data = load_json(Path(path))
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = {**data, "data": from_dict(DataConfig, data["data"])}
    try:
        cfg = TrainConfig(**data)
    except TypeError as e:
        raise VidmError(f"{path}: {e}") from None
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise VidmError(f"{path}: lr_schedule must be constant or cosine, got {cfg.lr_schedule!r}")
    if cfg.decay_steps < 0:
        raise VidmError(f"{path}: decay_steps must be at least 0, got {cfg.decay_steps}")
    if cfg.decay_steps and cfg.lr_schedule != "cosine":
        raise VidmError(f"{path}: decay_steps needs lr_schedule cosine (a constant rate has no decay)")
    if cfg.snapshot_every % cfg.save_every:
        raise VidmError(f"{path}: snapshot_every must be a multiple of save_every ({cfg.save_every})")
    if cfg.stage not in STAGE_KINDS:
        raise VidmError(f"{path}: stage must be one of {sorted(STAGE_KINDS)}, got {cfg.stage!r}")
    if cfg.batch_size % (dist.world_size() * cfg.accum_steps):
        raise VidmError(f"batch_size {cfg.batch_size} is not divisible by processes x accum_steps")
    return cfg


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class Order:
    """Epoch-wise shuffled order of `size` items; global batch `step` is a fixed slice of it."""

    def __init__(self, size: int, batch: int, seed: int):
        self.size, self.batch, self.seed = size, batch, seed
        self._perm: dict[int, np.ndarray] = {}

    def _epoch(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return self._perm[epoch]

    def indices(self, step: int) -> np.ndarray:
        positions = np.arange(step * self.batch, (step + 1) * self.batch)
        return np.array([self._epoch(p // self.size)[p % self.size] for p in positions])


# --- the stages: each draws its random numbers for the global batch and computes a local loss ---

class VAEStage:
    def __init__(self, cfg: TrainConfig, model: Autoencoder, device):
        self.cfg, self.device = cfg, device
        self.source = open_source(cfg.data)
        check_frames(self.source.video(0), model, cfg.data.dataset)
        self.size = len(self.source) * self.source.frames  # every frame of every clip
        self.latent_shape = model.latent_shape()
        if cfg.equivariance_weight < 0 or cfg.equivariance_encoder_weight < 0:
            raise VidmError(f"equivariance weights must be >= 0, got {cfg.equivariance_weight} and "
                            f"{cfg.equivariance_encoder_weight}")

    MAX_SHIFT = 7  # px of the equivariance terms' shifts: up to 1.75 latent px with the 4x VAE

    def draw(self, batch: int, g: torch.Generator) -> dict:
        draws = {"noise": torch.randn((batch, *self.latent_shape), generator=g)}
        if self.cfg.equivariance_weight or self.cfg.equivariance_encoder_weight:
            draws["shift"] = torch.randint(-self.MAX_SHIFT, self.MAX_SHIFT + 1, (batch, 2), generator=g)
        return draws

    def loss(self, model, indices: np.ndarray, draws: dict) -> torch.Tensor:
        frames = np.stack([self.source.frame(i // self.source.frames, i % self.source.frames) for i in indices])
        x = to_model_input(frames, self.device)
        loss = model.loss(x, draws["noise"].to(self.device), self.cfg.kl_weight)
        if "shift" in draws:
            from .equivariance import equivariance_losses

            shift = draws["shift"].to(self.device)
            decoder, encoder = equivariance_losses(model, x, shift[:, 0], shift[:, 1])
            loss = loss + self.cfg.equivariance_weight * decoder + self.cfg.equivariance_encoder_weight * encoder
        return loss


def class_labels(cfg: TrainConfig, model) -> torch.Tensor | None:
    """Per-video class labels for a class-conditional model; None for an unconditional one."""
    num_classes = model.config.unet.num_classes
    if not num_classes:
        return None
    labels = getattr(open_source(cfg.data), "labels", None)
    if labels is None or min(labels) < 0:
        raise VidmError(f"a class-conditional model needs a labelled dataset; {cfg.data.dataset!r} has no labels")
    if max(labels) >= num_classes:
        raise VidmError(f"the data has label {max(labels)}, the model only {num_classes} classes")
    return torch.tensor(labels)


def take_labels(labels: torch.Tensor | None, videos, device) -> torch.Tensor | None:
    return None if labels is None else labels[torch.as_tensor(videos)].to(device)


class ContentStage:
    def __init__(self, cfg: TrainConfig, model, device):
        self.labels = class_labels(cfg, model)
        self.latents = latent_cache(cfg, device)  # (N, L, c, h, w)
        self.size = self.latents.shape[0] * self.latents.shape[1]  # any frame is a valid first frame
        self.device, self.steps = device, model.diffusion.num_train_steps

    def draw(self, batch: int, g: torch.Generator) -> dict:
        return {"t": torch.randint(0, self.steps, (batch,), generator=g),
                "noise": torch.randn((batch, *self.latents.shape[2:]), generator=g)}

    def loss(self, model, indices, draws):
        L = self.latents.shape[1]
        z0 = self.latents[indices // L, indices % L].to(self.device)
        return model.loss(z0, draws["t"].to(self.device), draws["noise"].to(self.device),
                          take_labels(self.labels, indices // L, self.device))


class MotionStage:
    def __init__(self, cfg: TrainConfig, model, device):
        self.labels = class_labels(cfg, model)
        self.latents = latent_cache(cfg, device)
        self.size = self.latents.shape[0]
        self.device, self.model_cfg = device, model.config
        self.steps = model.diffusion.num_train_steps
        self.layers = None
        if model.layers is not None:
            vae = load_model(vae_folder(cfg), "autoencoder", device)
            data_key = json.dumps(dataclasses.asdict(cfg.data), sort_keys=True)
            self.layers = LayerStage(model.config.layers, open_source(cfg.data), vae, Path(cfg.out) / "cache",
                                     data_key, device)
            if self.layers.frames != self.latents.shape[1]:
                raise VidmError("the layers' cache and the latents hold clips of different lengths")
        if self.latents.shape[1] > self.model_cfg.max_frames:
            raise VidmError(f"training clips have {self.latents.shape[1]} frames: the motion model's max_frames "
                            f"({self.model_cfg.max_frames}) must be at least that")

    def draw(self, batch: int, g: torch.Generator) -> dict:
        shape = self.latents.shape[2:]
        draws = {"k": torch.randint(1, self.latents.shape[1], (batch,), generator=g),
                 "t": torch.randint(0, self.steps, (batch,), generator=g),
                 "noise": torch.randn((batch, *shape), generator=g),
                 "aug_level": torch.rand((batch,), generator=g) * self.model_cfg.aug_max_level,
                 "aug_noise": torch.randn((batch, self.model_cfg.context_frames, *shape), generator=g)}
        if self.layers is not None:
            draws |= self.layers.draw(batch, g)
        return draws

    def loss(self, model, indices, draws):
        k = draws["k"]
        videos = torch.as_tensor(indices)
        first, target, context = select_frames(self.latents, videos, k, self.model_cfg.context_frames)
        d = {n: v.to(self.device) for n, v in draws.items()}
        first, target, context = first.to(self.device), target.to(self.device), context.to(self.device)
        labels = take_labels(self.labels, indices, self.device)
        if self.layers is None:
            return model.loss(target, first, context, d["k"], d["t"], d["noise"], d["aug_level"], d["aug_noise"],
                              labels)
        motion_loss, mean = self.layers.loss(model.layers, videos, d)
        return model.loss(target, first, context, d["k"], d["t"], d["noise"], d["aug_level"], d["aug_noise"],
                          labels, mean=mean) + motion_loss


def select_frames(latents: torch.Tensor, videos: torch.Tensor, k: torch.Tensor, context_frames: int):
    """First latent, latent k and the `context_frames` latents just before k, oldest first (clamped at frame
    0, as in sampling), per video."""
    ctx_index = (k[:, None] - torch.arange(context_frames, 0, -1)[None]).clamp(min=0)  # (B, K)
    first = latents[videos, 0]
    target = latents[videos, k]
    context = latents[videos[:, None], ctx_index]  # (B, K, c, h, w)
    return first.float(), target.float(), context.float()


STAGES = {"vae": VAEStage, "content": ContentStage, "motion": MotionStage}


def param_groups(model: torch.nn.Module) -> list[dict]:
    """The optimizer's groups: every weight at the stage's lr, except a layered motion model's motion MLP,
    at `lr_scale` times it (LayersConfig)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    own = {id(p) for p in layers.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in own], "lr_scale": 1.0},
            {"params": list(layers.parameters()), "lr_scale": layers.config.lr_scale}]


class StageLoss(torch.nn.Module):
    """A stage's loss as a module's forward, so that DDP wraps (and syncs) the whole computation."""

    def __init__(self, model: torch.nn.Module, stage):
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, indices: np.ndarray, draws: dict) -> torch.Tensor:
        return self.stage.loss(self.model, indices, draws)


def to_model_input(frames: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def vae_folder(cfg: TrainConfig) -> Path:
    return Path(cfg.vae) if cfg.vae else Path(cfg.out) / "vae"


def check_frames(video: np.ndarray, vae: Autoencoder, dataset: str) -> None:
    expected = (vae.config.resolution, vae.config.resolution, vae.config.in_channels)
    if video.shape[1:] != expected:
        raise VidmError(f"{dataset} frames are {video.shape[1:]} (H, W, C), the VAE takes {expected}")


@torch.no_grad()
def latent_cache(cfg: TrainConfig, device) -> torch.Tensor:
    """Encodes the training clips once with the trained VAE, cached on disk keyed by VAE and data."""
    folder = vae_folder(cfg)
    vae = load_model(folder, "autoencoder", device)
    key = hashlib.sha1((folder / "model.safetensors").read_bytes()
                       + json.dumps(dataclasses.asdict(cfg.data), sort_keys=True).encode()
                       + repr(vae.config.scale_factor).encode()).hexdigest()[:16]
    path = Path(cfg.out) / "cache" / f"latents-{key}.npy"
    if dist.is_main() and not path.exists():
        source = open_source(cfg.data)
        check_frames(source.video(0), vae, cfg.data.dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a per-process name: stages may start together
            out = np.lib.format.open_memmap(str(tmp), mode="w+", dtype=np.float16,
                                            shape=(len(source), source.frames, *vae.latent_shape()))
            for i in tqdm(range(len(source)), desc="encoding latents", leave=False):
                out[i] = vae.encode(to_model_input(source.video(i), device)).cpu().numpy()
            out.flush()
            del out
    dist.barrier()
    return torch.from_numpy(np.load(path))


@torch.no_grad()
def measure_scale_factor(vae: Autoencoder, stage: VAEStage, device, num_frames: int = 512) -> float:
    """1 / std of the posterior means over held-in frames (Rombach et al. 2022, sec. 4.3.2)."""
    idx = np.linspace(0, stage.size - 1, num_frames).astype(int)
    frames = np.stack([stage.source.frame(i // stage.source.frames, i % stage.source.frames) for i in idx])
    mean, _ = vae.moments(to_model_input(frames, device))
    return float(1.0 / mean.float().std())


def warm_start(model: torch.nn.Module, folder: str, kind: str) -> list[str]:
    """Copies the weights of the model folder into `model`; returns the names of the new model's own.

    Every weight of the folder must exist in `model` with the same shape; weights only `model` has keep their
    initialisation (the new layers). Anything else is a one-line VidmError.
    """
    source = load_model(folder, kind).state_dict()
    own = model.state_dict()
    # Only the folder's weights must fit: those the new model adds may be missing from it.
    mismatch = state_dict_mismatch({k: v for k, v in own.items() if k in source}, source)
    if mismatch:
        raise VidmError(f"init_from {folder}: its weights do not fit the configured model ({mismatch})")
    model.load_state_dict(source, strict=False)
    new = sorted(set(own) - set(source))
    if dist.is_main():
        print(f"init_from {folder}: {len(source)} tensors loaded, {len(new)} new", flush=True)
    return new


def continue_run(model, ema, folder: str, kind: str) -> dict:
    """Loads an exported model of this run (its EMA weights) into the model and the EMA; returns its
    `trained` record, whose step the run goes on from (with a fresh optimizer)."""
    source = load_model(folder, kind)
    record = source.trained
    if not record or "step" not in record:
        raise VidmError(f"--continue-from {folder}: its config.json has no training record (step); "
                        f"to start a new run from these weights use init_from in the config")
    mismatch = state_dict_mismatch(model.state_dict(), source.state_dict())
    if mismatch:
        raise VidmError(f"--continue-from {folder}: its weights do not fit the configured model ({mismatch})")
    model.load_state_dict(source.state_dict())
    ema.module.load_state_dict(source.state_dict())
    return record


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, continue_from: str = "") -> Path:
    """Runs (or, with `resume`, resumes from its train_state.pt) a stage; `continue_from` goes on from an
    exported model of the same run at its recorded step, where the run folder was lost."""
    device = dist.init()
    stage_dir = Path(cfg.out) / cfg.stage
    state_path = stage_dir / STATE_NAME
    if resume and not state_path.exists():
        raise VidmError(f"nothing to resume: {state_path} does not exist")
    if resume and continue_from:
        raise VidmError("choose one of --resume (the run folder's state) and --continue-from (exported weights)")
    if not resume and state_path.exists():
        raise VidmError(f"{stage_dir} already holds a run: pass --resume, or choose another 'out'")

    use_bf16, why = resolve_precision(cfg.precision, device)
    if dist.is_main():
        print(f"precision: {why}", flush=True)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    model = build(STAGE_KINDS[cfg.stage], cfg.model).to(device)
    if cfg.init_from and not resume:
        warm_start(model, cfg.init_from, STAGE_KINDS[cfg.stage])
    stage = STAGES[cfg.stage](cfg, model, device)
    # fused: one kernel for all parameters on the GPU (the CPU keeps the default, bit-for-bit as before)
    opt = torch.optim.AdamW(param_groups(model), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda" or None)
    from timm.utils import ModelEmaV3  # here, not at import: timm takes seconds to import, and only training needs it

    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup, warmup_power=cfg.ema_warmup_power)
    step, cpu_before = 0, 0.0  # CPU seconds of all processes in earlier runs of this stage
    continued = []  # steps at which this run went on from exported weights with a fresh optimizer
    if continue_from:
        record = continue_run(model, ema, continue_from, STAGE_KINDS[cfg.stage])
        step, cpu_before = record["step"], record.get("cpu_hours", 0.0) * 3600
        continued = record.get("continued_at", []) + [step]
        if dist.is_main():
            print(f"continuing from {continue_from} at step {step} ({cpu_before / 3600:.2f} CPU-hours so far), "
                  f"the optimizer warming up again", flush=True)
    if resume:
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        ema.module.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        cpu_before = state.get("cpu_seconds", 0.0)
        continued = state.get("continued_at", [])

    world, rank = dist.world_size(), dist.rank()
    net = StageLoss(model, stage)
    if world > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    local = cfg.batch_size // world
    micro = local // cfg.accum_steps
    order = Order(stage.size, cfg.batch_size, cfg.seed)
    log_path = stage_dir / "log.jsonl"
    if dist.is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.stage}", disable=not (progress and dist.is_main()))
    t0, cpu0, window = time.time(), time.process_time(), []
    cpu_seconds = lambda: cpu_before + dist.all_sum(time.process_time() - cpu0, device)  # noqa: E731
    while step < cfg.steps:
        g = step_generator(cfg.seed, step)
        # Dropout draws from the global generator: per step and per process, so resuming repeats it.
        torch.manual_seed(cfg.seed * 1_000_003 + step + 7919 * rank)
        with record_function("train/draw"):
            indices = order.indices(step)
            draws = stage.draw(cfg.batch_size, g)
        for group in opt.param_groups:
            # (a run saved before groups had scales has one group, at the stage's lr)
            group["lr"] = learning_rate(cfg, step, continued[-1] if continued else 0) * group.get("lr_scale", 1.0)
        total = torch.zeros((), device=device)  # stays on the device: no host sync until a log line
        for m in range(cfg.accum_steps):
            lo = rank * local + m * micro
            part = slice(lo, lo + micro)
            sync_now = m == cfg.accum_steps - 1
            ctx = net.no_sync() if (world > 1 and not sync_now) else contextlib.nullcontext()
            with ctx, torch.autocast(device.type, torch.bfloat16, enabled=use_bf16):
                with record_function("train/forward"):
                    loss = net(indices[part], {n: v[part] for n, v in draws.items()})
                with record_function("train/backward"):
                    (loss / cfg.accum_steps).backward()
            total += loss.detach().float() / cfg.accum_steps
        with record_function("train/optimizer"):
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        with record_function("train/ema"):
            ema.update(model, step=step)
        step += 1
        window.append(total)
        bar.update(1)
        log_now = step % cfg.log_every == 0 or step == cfg.steps
        save_now = step % cfg.save_every == 0 or step == cfg.steps
        cpu = cpu_seconds() if log_now or save_now else 0.0  # a collective: only when it is used
        out_of_time = log_now and 0 < cfg.cpu_hours * 3600 <= cpu
        if log_now:
            mean_loss = dist.all_mean(torch.stack(window).mean().item(), device)
            window = []
            if dist.is_main():
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": mean_loss, "lr": opt.param_groups[0]["lr"],
                                        "ema_decay": round(ema.get_decay(step - 1), 6),  # of the last update
                                        "seconds": round(time.time() - t0, 1),
                                        "cpu_hours": round(cpu / 3600, 6)}) + "\n")
        if save_now or out_of_time:
            if dist.is_main():
                save_checkpoint(cfg, stage, model, ema, opt, step, stage_dir, device, cpu, continued)
                if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                    save_model(ema.module, stage_dir / f"step-{step}")
            dist.barrier()
        if out_of_time:
            if dist.is_main():
                print(f"stopped at step {step}: {cpu / 3600:.3f} CPU-hours used (cpu_hours {cfg.cpu_hours})",
                      flush=True)
            break
    bar.close()
    dist.cleanup()
    return stage_dir


def save_checkpoint(cfg, stage, model, ema, opt, step, stage_dir: Path, device, cpu_seconds: float,
                    continued: list[int]) -> None:
    """The EMA model as a loadable folder (with its training record), then the full training state; both
    written atomically."""
    published = ema.module
    published.trained = {"step": step, "cpu_hours": round(cpu_seconds / 3600, 4), "continued_at": continued}
    if cfg.stage == "vae":
        published.config.scale_factor = measure_scale_factor(published, stage, device)
        model.config.scale_factor = published.config.scale_factor
    save_model(published, stage_dir)
    with atomic_path(stage_dir / STATE_NAME) as tmp:
        torch.save({"model": model.state_dict(), "ema": published.state_dict(),
                    "optimizer": opt.state_dict(), "step": step, "cpu_seconds": cpu_seconds,
                    "continued_at": continued}, tmp)
