"""Helpers shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time

import numpy as np
import torch


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of fn() over `repeats` runs after one warm-up (CUDA synchronised)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def vit_b16_satellite_tower():
    """A full-size CLIP ViT-B/16 vision tower with a 512-d projection (SatBind's architecture),
    random weights."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        patch_size=16,
        image_size=224,
        projection_dim=512,
        attn_implementation="sdpa",
    )
    return CLIPVisionModelWithProjection(config)
