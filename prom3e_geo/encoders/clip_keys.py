"""open_clip CLIP checkpoints -> `transformers.CLIPModel`: state-dict keys and config.

The BioCLIP / TaxaBind ViT-B/16 image and text towers are open_clip checkpoints; they are
converted key by key (open_clip's `visual.transformer.resblocks.N.*` and `transformer.resblocks.N.*`
to transformers' `vision_model.encoder.layers.N.*` and `text_model.encoder.layers.N.*`, the fused
`attn.in_proj_*` split into q, k, v), so neither open_clip nor torchvision is needed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # transformers is imported when a tower is loaded
    from transformers import CLIPConfig

from prom3e_geo.errors import InputError

BLOCK_KEYS = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
TOP_KEYS = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
TRANSPOSED_KEYS = {
    "visual.proj": "visual_projection.weight",
    "text_projection": "text_projection.weight",
}
TOWER_KEYS = {
    "visual.transformer.resblocks": "vision_model.encoder.layers",
    "transformer.resblocks": "text_model.encoder.layers",
}
IGNORED_KEYS = {"attn_mask"}


def open_clip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip CLIP state dict -> `transformers.CLIPModel` state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in IGNORED_KEYS:
            continue
        if key in TOP_KEYS:
            out[TOP_KEYS[key]] = value
        elif key in TRANSPOSED_KEYS:
            out[TRANSPOSED_KEYS[key]] = value.T.contiguous()
        elif m := re.match(
            r"(visual\.transformer\.resblocks|transformer\.resblocks)\.(\d+)\.(.+)$", key
        ):
            tower, layer, rest = TOWER_KEYS[m.group(1)], m.group(2), m.group(3)
            prefix = f"{tower}.{layer}"
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]  # weight or bias
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}.self_attn.{name}_proj.{kind}"] = part.contiguous()
            else:
                module, param = rest.rsplit(".", 1)
                if module not in BLOCK_KEYS:
                    raise InputError(f"open_clip key {key!r} has no transformers counterpart")
                out[f"{prefix}.{BLOCK_KEYS[module]}.{param}"] = value
        else:
            raise InputError(f"open_clip key {key!r} has no transformers counterpart")
    return out


def clip_config_from_open_clip(
    state: dict[str, torch.Tensor], model_cfg: dict[str, Any] | None = None
) -> CLIPConfig:
    """A `CLIPConfig` for an open_clip state dict: shapes from the tensors, heads and activation
    from open_clip's `model_cfg` when given (defaults: 64-wide heads, GELU)."""
    from transformers import CLIPConfig

    cfg = model_cfg or {}
    vision_cfg, text_cfg = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    v_width, _, patch, _ = state["visual.conv1.weight"].shape
    v_layers = 1 + max(
        int(k.split(".")[3]) for k in state if k.startswith("visual.transformer.resblocks.")
    )
    t_layers = 1 + max(
        int(k.split(".")[2]) for k in state if k.startswith("transformer.resblocks.")
    )
    vocab, t_width = state["token_embedding.weight"].shape
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return CLIPConfig(
        projection_dim=state["visual.proj"].shape[1],
        vision_config={
            "hidden_size": v_width,
            "intermediate_size": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": v_layers,
            "num_attention_heads": v_width // vision_cfg.get("head_width", 64),
            "patch_size": patch,
            "image_size": grid * patch,
            "hidden_act": act,
            "projection_dim": state["visual.proj"].shape[1],
        },
        text_config={
            "hidden_size": t_width,
            "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": t_layers,
            "num_attention_heads": text_cfg.get("heads", t_width // 64),
            "vocab_size": vocab,
            "max_position_embeddings": state["positional_embedding"].shape[0],
            "hidden_act": act,
            "eos_token_id": vocab - 1,  # open_clip pools at the highest token id (end of text)
            "projection_dim": state["text_projection"].shape[1],
        },
    )


# -- loading ---------------------------------------------------------------------------------------
