"""Device selection and mixed precision, shared by training and inference."""

from __future__ import annotations

import contextlib
import ctypes
import sys

import torch

from prom3e_geo.errors import InputError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA when available, else CPU; `cuda` without a GPU is an input error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise InputError(f"unknown device {spec!r} (auto, cpu, cuda or cuda:N)") from None


def autocast(device: torch.device, amp: str = "bf16"):
    """bf16/fp16 autocast on CUDA; a no-op on CPU or with amp='none'."""
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def release_freed_memory() -> None:
    """Give memory freed by finished work back to the OS. glibc keeps freed blocks in per-thread
    arenas, and a grid run's prefetch threads and varying batch sizes fragment them: without this
    the peak RSS of a CONUS run creeps up chunk after chunk. A no-op off glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
