"""Load and save ProM3E weights.

Layouts read:

* **our format**: one `.safetensors` file whose metadata holds the JSON config;
* **Hugging Face folder** (`MVRL/ProM3E` via PyTorchModelHubMixin): `config.json` (flat, or
  nested under `config` as rshf's class takes it) plus `model.safetensors` or
  `pytorch_model.bin`; a hub id (`MVRL/ProM3E`, `hf-hub:ORG/NAME@REV`) is downloaded first;
* **Lightning checkpoint** (`.ckpt`, the official training output): weights under `state_dict`
  with the `model.` prefix; the architecture comes from `hyper_parameters` when present,
  otherwise it is inferred from the tensor shapes;
* a plain `state_dict` saved with `torch.save` (`.pt`, `.pth`, `.bin`).

Torch files are opened with `weights_only=True`: a pickle that needs code execution is refused.
Keys must match the architecture exactly; a mismatch names the missing and unexpected keys.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from prom3e_geo.errors import WeightsError
from prom3e_geo.hashing import file_sha256
from prom3e_geo.hub import MIXIN_FILES, MIXIN_WEIGHTS, fetch_weights, parse_hub_ref
from prom3e_geo.model.prom3e import ProM3E, ProM3EConfig

FORMAT_TAG = "prom3e-geo/prom3e"
SYNTHETIC_KEY = "synthetic"  # metadata "true": weights trained on synthetic data (outputs say so)
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class LoadedModel:
    model: ProM3E
    source: str  # "safetensors", "huggingface" or "lightning"/"state_dict"
    weights_path: Path
    sha256: str
    origin: str | None = None  # ORG/NAME@COMMIT for weights from the hub
    synthetic: bool = False  # trained on made-up data (metadata `synthetic`: the demo world's)


def save_prom3e(model: ProM3E, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Save weights + config as one safetensors file (our own format)."""
    path = Path(path)
    metadata = {"format": FORMAT_TAG, "config": json.dumps(model.config.to_dict()), **(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.partial")
    save_file(state, tmp, metadata=metadata)
    tmp.replace(path)
    return path


def load_prom3e(
    path: str | Path, map_location: str | torch.device = "cpu", hint: str | None = None
) -> LoadedModel:
    """Load a ProM3E from any supported layout or a hub id (see the module docstring); `hint`
    says what to do when hub weights are missing offline."""
    ref = parse_hub_ref(str(path))
    if ref is not None:
        fetched = fetch_weights(ref, *MIXIN_FILES, "ProM3E weights", hint)
        return replace(_load_hf_folder(fetched.path, map_location), origin=fetched.origin)
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"model {path} does not exist")
    if path.is_dir():
        return _load_hf_folder(path, map_location)
    if path.suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
        config = _config_from(metadata.get("config"), state, path)
        loaded = _build(config, state, "safetensors", path, map_location)
        return replace(loaded, synthetic=metadata.get(SYNTHETIC_KEY) == "true")
    if path.suffix in TORCH_SUFFIXES:
        obj = _torch_load(path)
        state, hparams, source = _unwrap(obj, path)
        config = ProM3EConfig.from_dict({**_infer_config(state, path).to_dict(), **hparams})
        return _build(config, state, source, path, map_location)
    raise WeightsError(
        f"model {path}: unknown checkpoint type "
        f"(expected a folder, .safetensors or {', '.join(TORCH_SUFFIXES)})"
    )


def read_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors or torch file, unwrapped from `state_dict` when nested
    (prefixes are kept); torch files are read with weights_only=True."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path)[0]
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"weights {path} hold a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _load_hf_folder(path: Path, map_location: str | torch.device) -> LoadedModel:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"model folder {path} has no config.json")
    try:
        config_data = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{config_file} is not valid JSON: {exc}") from None
    for name in MIXIN_WEIGHTS:
        weights = path / name
        if weights.is_file():
            break
    else:
        raise WeightsError(f"model folder {path} has none of {', '.join(MIXIN_WEIGHTS)}")
    if weights.suffix == ".safetensors":
        state, _ = _read_safetensors(weights)
    else:
        state, _, _ = _unwrap(_torch_load(weights), weights)
    config = _config_from(config_data, state, config_file)
    return _build(config, state, "huggingface", weights, map_location)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as fh:
            metadata = fh.metadata() or {}
        return load_file(path), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"model {path} is not a valid safetensors file: {exc}") from None


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported GLOBAL ([\w.]+)", str(exc))
        if found:
            raise WeightsError(
                f"model {path} is a pickle that needs code execution to load ({found.group(1)}); "
                "refusing it. Convert it to safetensors on a trusted machine."
            ) from None
        raise WeightsError(f"model {path} cannot be read as a torch checkpoint") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"model {path} cannot be read as a torch checkpoint: {reason}") from None


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state_dict without the Lightning `model.` prefix, hyper-parameters, layout name)."""
    if not isinstance(obj, dict):
        raise WeightsError(f"model {path} holds a {type(obj).__name__}, not a state dict")
    hparams: dict[str, Any] = {}
    source = "state_dict"
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        hp = obj.get("hyper_parameters")
        hparams = dict(hp) if isinstance(hp, dict) else {}
        obj, source = obj["state_dict"], "lightning"
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"model {path}: entry {key!r} is not a tensor")
        state[key.removeprefix("model.")] = value
    return state, hparams, source


def _config_from(
    config_data: str | dict[str, Any] | None, state: dict[str, torch.Tensor], path: Path
) -> ProM3EConfig:
    if config_data is None:
        return _infer_config(state, path)
    data = json.loads(config_data) if isinstance(config_data, str) else config_data
    if isinstance(data.get("config"), dict):  # rshf's ProM3E(config) saved by the hub mixin
        data = data["config"]
    try:
        return ProM3EConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"model {path}: bad config: {exc}") from None


def _infer_config(state: dict[str, torch.Tensor], path: Path) -> ProM3EConfig:
    """Architecture from tensor shapes (heads cannot be inferred: default 8)."""
    try:
        embed_dim = state["cls_tokens"].shape[1]
        input_dim = state["projectors.0.net.0.weight"].shape[0]
        registers = state["register_tokens"].shape[0]
        mlp_dim = state["encoder.0.mlp.net.1.weight"].shape[0]
    except KeyError as exc:
        raise WeightsError(
            f"model {path} is not a ProM3E checkpoint: no {exc.args[0]!r} "
            f"(found {', '.join(sorted(state)[:6])}{', ...' if len(state) > 6 else ''})"
        ) from None
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.(\d+)\.", k)))
    modalities = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"projectors\.(\d+)\.", k))
    )
    return ProM3EConfig(
        input_dim=input_dim,
        embed_dim=embed_dim,
        num_modalities=modalities,
        depth=depth,
        mlp_dim=mlp_dim,
        num_register_tokens=registers,
    )


def _build(
    config: ProM3EConfig,
    state: dict[str, torch.Tensor],
    source: str,
    path: Path,
    map_location: str | torch.device,
) -> LoadedModel:
    try:
        model = ProM3E(config)
    except (ValueError, AssertionError) as exc:
        raise WeightsError(f"model {path}: invalid architecture {config}: {exc}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"model {path} does not match the ProM3E architecture: "
            f"missing keys {_some(missing)}; unexpected keys {_some(unexpected)}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise WeightsError(f"model {path}: tensor shapes differ from the config: {_some(wrong)}")
    model.load_state_dict(state, strict=True)
    model.to(map_location).eval()
    return LoadedModel(model, source, path, file_sha256(path))


def _some(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
