"""Process-group helpers: one code path for the CPU, one GPU, or N processes under torchrun."""
from __future__ import annotations

import os

import torch
import torch.distributed as td


def init() -> torch.device:
    """Joins the torchrun process group when WORLD_SIZE > 1 (nccl on GPU, gloo on CPU); returns the device."""
    use_cuda = torch.cuda.is_available() and os.environ.get("VIDM_DEVICE", "auto") != "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not td.is_initialized():
        td.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def rank() -> int:
    return td.get_rank() if td.is_initialized() else 0


def world_size() -> int:
    return td.get_world_size() if td.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if td.is_initialized():
        td.barrier()


def all_mean(value: float, device) -> float:
    """Mean of a scalar over processes (for logging)."""
    if not td.is_initialized():
        return value
    return all_sum(value, device) / world_size()


def all_sum(value: float, device) -> float:
    """Sum of a scalar over processes."""
    if not td.is_initialized():
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64)
    td.all_reduce(t)
    return t.item()


def cleanup() -> None:
    if td.is_initialized():
        td.destroy_process_group()
