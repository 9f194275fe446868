"""Where and in what precision to compute: asked-for hardware that is absent is an error."""

from __future__ import annotations

import contextlib
import os

import torch

from sweeplab.core.errors import UserError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(kind: str, gpu: int | None = None) -> torch.device:
    """`gpu`: the CUDA device of a parallel sweep's job that holds one (sweeplab.sweeps.gpu_slots)."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if kind == "auto":
        kind = next(name for name, ok in available.items() if ok)
    if not available[kind]:
        raise UserError(f"device={kind} was asked for but this machine has no usable {kind}: use device=cpu or auto")
    return torch.device(kind, gpu) if kind == "cuda" and gpu is not None else torch.device(kind)


def gpu_uuid(device: torch.device) -> str | None:
    """The physical GPU behind a CUDA device (NVML numbers GPUs its own way, CUDA_VISIBLE_DEVICES renumbers them)."""
    return str(torch.cuda.get_device_properties(device).uuid) if device.type == "cuda" else None


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Fast (the default): cuDNN benchmarks convolution algorithms per shape and float32 matmuls use TF32 on
    GPUs that have it. Deterministic: deterministic algorithms, no benchmark, full float32, so the same seed
    gives the same run on a GPU too. The CPU's defaults are left as they are: its runs are reproducible anyway."""
    if device.type == "cpu":
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # what is allocated without a device lands on the job's GPU, not on cuda:0
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.set_float32_matmul_precision("highest" if deterministic else "high")


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 autocast where a CPU computes bf16 natively, full precision everywhere else."""
    if precision != "auto":
        return precision
    native_bf16 = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return "bf16" if native_bf16 else "32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass (bf16/fp16); a no-op at full precision."""
    if precision not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling (on the GPUs: CUDA and MPS); bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type in ("cuda", "mps"))
