"""transformers CLIP state dicts -> open_clip's layout, to write open_clip checkpoints in tests
(the inverse of `prom3e_geo.encoders.clip_keys.open_clip_to_hf`)."""

from __future__ import annotations

import re

import torch

from prom3e_geo.encoders.clip_keys import BLOCK_KEYS, TOP_KEYS, TOWER_KEYS, TRANSPOSED_KEYS
from prom3e_geo.errors import InputError


def hf_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`transformers.CLIPModel` state dict -> open_clip CLIP state dict."""
    top = {v: k for k, v in TOP_KEYS.items()}
    transposed = {v: k for k, v in TRANSPOSED_KEYS.items()}
    towers = {v: k for k, v in TOWER_KEYS.items()}
    block = {v: k for k, v in BLOCK_KEYS.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in top:
            out[top[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.T.contiguous()
        elif m := re.match(
            r"(vision_model\.encoder\.layers|text_model\.encoder\.layers)\.(\d+)\.(.+)$", key
        ):
            prefix = f"{towers[m.group(1)]}.{m.group(2)}"
            rest = m.group(3)
            if q := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((prefix, q.group(2)), {})[q.group(1)] = value
            else:
                module, param = rest.rsplit(".", 1)
                out[f"{prefix}.{block[module]}.{param}"] = value
        else:
            raise InputError(f"transformers key {key!r} has no open_clip counterpart")
    for (prefix, kind), parts in qkv.items():
        out[f"{prefix}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out
