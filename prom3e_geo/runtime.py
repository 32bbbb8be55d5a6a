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


PRECISIONS = ("auto", "bf16", "float32")


def autocast(device: torch.device, amp: str = "bf16") -> contextlib.AbstractContextManager[object]:
    """bf16/fp16 autocast on the device (CUDA or CPU); a no-op with amp 'none' or 'float32'."""
    if amp in ("none", "float32"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The inference precision for `--precision`: `auto` is bf16 on CUDA and float32 on a CPU
    (where bf16 matrix products are no faster: measured on a CPU with AVX512-BF16, 0.55x float32);
    `bf16` and `float32` are taken as given."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (auto, bf16 or float32)")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "float32"
    return precision


@torch.no_grad()
def flush_subnormals_(module: torch.nn.Module) -> torch.nn.Module:
    """Set a frozen module's subnormal float32 weights (0 < |w| < 1.2e-38) to zero, in place.
    They change no output at float32 precision, but every product that meets one takes the
    CPU's slow path: GeoCLIP's released weights hold about 97,000, which made its MLPs 3x
    slower on a CPU."""
    tiny = torch.finfo(torch.float32).tiny
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dtype == torch.float32:
            tensor.masked_fill_(tensor.abs() < tiny, 0.0)
    return module


def _glibc() -> ctypes.CDLL | None:
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
