"""Species-distribution similarity maps from an embedding store.

Queries are photos (encoded by the image tower) or, when the pipeline has a text tower, species
names. Two scores per cell (both in [-1, 1]):

* `hybrid` (default; method notes 3.2 applied to maps): (1 - delta) cos(q, f_t(cell)) + delta
  cos(f^_t(q), f_t(cell)), where t is a context modality stored with the cells (default: `env`
  when the store has it, else `loc`, else `sat`: the order measured best on the demo world),
  f_t(cell) the cell's own t embedding, and f^_t(q) ProM3E's reconstruction of modality t from
  the query alone (modality inversion), mixing inter- and intra-modal similarity;
* `recon`: cos(query, reconstructed image embedding of the cell), the supplement's Fig. 4 maps:
  ProM3E's guess of what is photographed there, compared with the query photo. Its values
  depend on how sharp a cell's reconstruction is as much as on the query: where few species
  live (the demo world's high mountains) the reconstruction is one confident species and its
  cosine with an unrelated photo exceeds that of a species-rich cell's blended reconstruction
  with the right one, so species-poor places light up on every map (docs/evaluation.md).

`rescale` maps each band linearly to [0, 1] over the AOI (min -> 0, max -> 1) and records the
original range; `threshold` adds a presence band (score >= T, after rescaling when asked).
Cells are processed in blocks of rows, so memory stays bounded. `sdm_layers` puts it together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from prom3e_geo.errors import InputError
from prom3e_geo.grid import Grid
from prom3e_geo.hashing import file_sha256
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.stored import ROW_BLOCK
from prom3e_geo.model.prom3e import MODALITIES, ProM3E, visibility


@dataclass
class Query:
    name: str  # band description: the photo's file stem or the species name
    source: str  # path or name, for provenance
    embedding: torch.Tensor  # [512], L2-normalised
    modality: str  # image, text or audio


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MODES = ("hybrid", "recon")
DEFAULT_MODE = "hybrid"
TARGET_PREFERENCE = ("env", "loc", "sat")  # hybrid target when none is asked for


def encode_queries(queries: Sequence[str], encoders: dict) -> list[Query]:
    """Photos (existing files) through the image tower, recordings (.wav, .flac, .ogg, .mp3)
    through the audio tower; other strings as species names through the text tower when there
    is one. A file that is not an image is an input error."""
    out = []
    for q in queries:
        path = Path(q)
        if path.exists() and path.suffix.lower() in AUDIO_SUFFIXES:
            if "audio" not in encoders:
                raise InputError("this pipeline has no audio encoder for recording queries")
            emb = encoders["audio"].embed([path])[0]
            out.append(Query(path.stem, str(path), emb, "audio"))
        elif path.exists():
            if "image" not in encoders:
                raise InputError("this pipeline has no image encoder for photo queries")
            emb = encoders["image"].embed([path])[0]
            out.append(Query(path.stem, str(path), emb, "image"))
        elif "text" in encoders and not any(sep in q for sep in ("/", "\\")) and not path.suffix:
            emb = encoders["text"].embed([q])[0]
            out.append(Query(q.replace(" ", "_"), q, emb, "text"))
        else:
            raise InputError(
                f"query {q} does not exist (give a photo file{', or a species name' if 'text' in encoders else ''})"
            )
    names = [q.name for q in out]
    if len(set(names)) != len(names):
        raise InputError(f"queries must have distinct names, got {names}")
    return out


def similarity(
    store: xr.Dataset,
    queries: list[Query],
    mode: str = DEFAULT_MODE,
    delta: float = 0.5,
    target: str | None = None,
    model: ProM3E | None = None,
) -> np.ndarray:
    """[Q, H, W] float32 scores (NaN where the cell is outside the AOI or invalid)."""
    target = target or hybrid_target(store)
    q = torch.stack([x.embedding for x in queries]).float()
    if mode == "recon":
        directions = [q]
        weights = [1.0]
        variable = "recon_image"
    elif mode == "hybrid":
        variable = f"ctx_{target}"
        if variable not in store:
            raise InputError(
                f"hybrid mode needs the {target} context in the store (it has {', '.join(v for v in store.data_vars if v.startswith('ctx_'))})"
            )
        if model is None:
            raise InputError("hybrid mode needs the ProM3E model to invert the query")
        if not 0 <= delta <= 1:
            raise InputError(f"--delta must be in [0, 1], got {delta}")
        directions = [q, invert(model, queries, target)]
        weights = [1 - delta, delta]
    else:
        raise InputError(f"unknown mode {mode!r} ({' or '.join(MODES)})")
    h, w = store.sizes["y"], store.sizes["x"]
    out = np.full((len(queries), h, w), np.nan, dtype=np.float32)
    valid = store["valid"]
    for r0 in range(0, h, ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, h))
        block = torch.from_numpy(np.asarray(store[variable][rows].values, dtype=np.float32))
        block = F.normalize(torch.nan_to_num(block), dim=-1)
        score = sum(
            wt * torch.einsum("yxd,qd->qyx", block, d)
            for wt, d in zip(weights, directions, strict=True)
        )
        ok = np.asarray(valid[rows].values, dtype=bool)
        out[:, rows] = np.where(ok, score.numpy(), np.nan)
    return out


def hybrid_target(store: xr.Dataset) -> str:
    """The first of `TARGET_PREFERENCE` whose context embeddings the store holds."""
    held = [t for t in TARGET_PREFERENCE if f"ctx_{t}" in store]
    if not held:
        raise InputError("hybrid mode needs sat, loc or env context embeddings in the store")
    return held[0]


@torch.inference_mode()
def invert(model: ProM3E, queries: list[Query], target: str) -> torch.Tensor:
    """ProM3E's reconstruction of modality `target` from each query alone ([Q, 512])."""
    device = next(model.parameters()).device
    x = torch.zeros(len(queries), len(MODALITIES), model.config.input_dim, device=device)
    rows = []
    for i, q in enumerate(queries):
        x[i, MODALITIES.index(q.modality)] = q.embedding.to(device)
        rows.append(MODALITIES.index(q.modality))
    outs = []
    for i, m in enumerate(rows):
        out = model(x[i : i + 1], visibility(1, [m], len(MODALITIES), device))
        outs.append(out.recon[0, MODALITIES.index(target)])
    return torch.stack(outs).float().cpu()


def rescale(scores: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Each band linearly to [0, 1] over its finite cells; returns the original (min, max)."""
    out = np.empty_like(scores)
    ranges = []
    for i, band in enumerate(scores):
        lo, hi = float(np.nanmin(band)), float(np.nanmax(band))
        out[i] = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        ranges.append((lo, hi))
    return out, ranges


def check_sdm_options(delta: float, threshold: float | None) -> None:
    """Refuse nonsense before any work: a threshold that is not finite, a delta outside [0, 1]
    (in any mode: a typo should not pass silently)."""
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite number, got {threshold}")
    if not 0 <= delta <= 1:
        raise InputError(f"--delta must be in [0, 1], got {delta}")


def sdm_layers(
    store: xr.Dataset,
    grid: Grid,
    queries: list[Query],
    model: ProM3E | None = None,
    mode: str = DEFAULT_MODE,
    delta: float = 0.5,
    target: str | None = None,
    rescale_01: bool = False,
    threshold: float | None = None,
) -> LayerSet:
    """Similarity bands (one per query) and, with a threshold, presence bands."""
    check_sdm_options(delta, threshold)
    if mode == "hybrid":
        target = target or hybrid_target(store)
    scores = similarity(store, queries, mode, delta, target, model)
    params: dict[str, object] = {"layer": "sdm", "mode": mode}
    if mode == "hybrid":
        params |= {"delta": delta, "hybrid_target": target}
    if rescale_01:
        scores, ranges = rescale(scores)
        params["rescaled"] = "linear to [0, 1] over the AOI; original ranges " + "; ".join(
            f"{q.name}: {lo:.4f}..{hi:.4f}" for q, (lo, hi) in zip(queries, ranges, strict=True)
        )
    bands, docs = {}, {}
    for q, band in zip(queries, scores, strict=True):
        bands[q.name] = band
        docs[q.name] = (
            f"similarity to {q.source} ({mode}{', rescaled to 0-1' if rescale_01 else ''})"
        )
    if threshold is not None:
        params["threshold"] = threshold
        for q, band in zip(queries, scores, strict=True):
            name = "presence" if len(queries) == 1 else f"presence_{q.name}"
            bands[name] = np.where(
                np.isfinite(band), (band >= threshold).astype(np.float32), np.nan
            )
            docs[name] = f"1 where the similarity to {q.source} is >= {threshold}"
    params["queries"] = ", ".join(q.source for q in queries)
    for q in queries:
        if Path(q.source).is_file():
            params[f"query_{q.name}_sha256"] = file_sha256(q.source)
    units = {
        q.name: "cosine similarity" + (" (rescaled 0-1)" if rescale_01 else "") for q in queries
    }
    classes = {name: ("absent", "present") for name in bands if name.startswith("presence")}
    return LayerSet(bands, docs, params, grid, units=units, classes=classes)
