"""Encoder weights from the files people have, as state dicts.

Safetensors or torch checkpoints whose tensors may sit under `state_dict` and behind a prefix
(`model.`, `location_encoder.`, ...), and folders saved by `huggingface_hub`'s
`PyTorchModelHubMixin` (`config.json` + `model.safetensors` or `pytorch_model.bin`, the layout of
the GeoCLIP and SINR hub repositories).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from prom3e_geo.errors import WeightsError
from prom3e_geo.hub import MIXIN_WEIGHTS
from prom3e_geo.model.checkpoint import read_tensor_file


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file (safetensors, or torch with weights_only=True), or of the
    weights file of a hub-mixin folder."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in MIXIN_WEIGHTS if (path / name).is_file()]
        if not found:
            raise WeightsError(f"weights folder {path} has none of {', '.join(MIXIN_WEIGHTS)}")
        path = found[0]
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


def mixin_config(path: str | Path) -> dict[str, Any]:
    """The constructor arguments a hub-mixin folder records in `config.json` ({} otherwise)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{config} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{config} holds a {type(data).__name__}, not an object")
    return data
