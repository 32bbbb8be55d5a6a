"""Reading encoder weights from the files people have: safetensors or torch checkpoints whose
tensors may sit under `state_dict` and behind a prefix (`model.`, `location_encoder.`, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from prom3e_geo.errors import WeightsError
from prom3e_geo.model.checkpoint import read_tensor_file


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file (safetensors, or torch with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return read_tensor_file(path)


def select_prefix(
    state: dict[str, torch.Tensor], expected: Iterable[str], path: str | Path
) -> dict[str, torch.Tensor]:
    """The tensors for `expected` keys, found behind whatever common prefix the file uses."""
    expected = list(expected)
    anchor = expected[0]
    prefixes = sorted({k[: -len(anchor)] for k in state if k.endswith(anchor)}, key=len)
    for prefix in prefixes:
        if all(prefix + k in state for k in expected):
            return {k: state[prefix + k] for k in expected}
    have = sorted(state)
    missing = [k for k in expected if not any(h.endswith(k) for h in have)]
    raise WeightsError(
        f"weights {path} do not match the architecture: missing {', '.join(missing[:4]) or 'none'}"
        f"{' ...' if len(missing) > 4 else ''}; found {', '.join(have[:4])}{' ...' if len(have) > 4 else ''}"
    )
