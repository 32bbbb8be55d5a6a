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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError
from prom3e_geo.grid import Grid
from prom3e_geo.hashing import file_sha256
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.modes import DEFAULT_MODE, MODES
from prom3e_geo.layers.stored import ROW_BLOCK
from prom3e_geo.model.prom3e import MODALITIES, ProM3E, visibility


@dataclass
class Query:
    name: str  # band description: the photo's file stem or the species name
    source: str  # path or name, for provenance
    embedding: torch.Tensor  # [512], L2-normalised
    modality: str  # image, text or audio
    sha256: str | None = None  # of the query file (provenance); None for a species name


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TARGET_PREFERENCE = ("env", "loc", "sat")  # hybrid target when none is asked for


def query_kind(query: str) -> str:
    """`audio` for a recording file (.wav, .flac, .ogg, .mp3), `image` for another file, `text`
    for a species name (no path separator, no extension); a folder, a missing file or an empty
    query is an input error."""
    path = Path(query)
    if not query.strip():
        raise InputError("a --query is empty (give a photo, a recording or a species name)")
    if path.is_dir():
        raise InputError(f"query {query} is a folder (give a photo or a recording file)")
    if path.exists():
        return "audio" if path.suffix.lower() in AUDIO_SUFFIXES else "image"
    if any(sep in query for sep in ("/", "\\")) or path.suffix:
        raise InputError(f"query {query} does not exist (give a photo or a recording file)")
    return "text"


def query_name(query: str) -> str:
    """A query's band name: the file stem, or the species name with underscores."""
    return Path(query).stem if query_kind(query) != "text" else query.replace(" ", "_")


def check_queries(queries: Sequence[str]) -> None:
    """Read every query file (a photo as an image, a recording as audio) and check the names,
    before any work: a bad query is refused in a second, not after a store was computed."""
    from prom3e_geo.encoders.audio import load_audio
    from prom3e_geo.encoders.clip import load_photo

    for q in queries:
        kind = query_kind(q)
        if kind == "image":
            load_photo(q)
        elif kind == "audio":
            load_audio(q)
    names = [query_name(q) for q in queries]
    if len(set(names)) != len(names):
        raise InputError(f"queries must have distinct names, got {names}")


def check_towers(queries: Sequence[str], encoders: Mapping[str, Encoder]) -> None:
    """Refuse a query of a kind the pipeline has no tower for (a recording without an audio
    encoder, a species name without a text tower)."""
    for q in queries:
        kind = query_kind(q)
        if kind in encoders:
            continue
        if kind == "text":
            raise InputError(
                f"query {q} does not exist (give a photo file; this pipeline has no text "
                "tower for species names)"
            )
        what = {"image": "photo", "audio": "recording"}[kind]
        raise InputError(f"this pipeline has no {kind} encoder for {what} queries")


def encode_queries(queries: Sequence[str], encoders: Mapping[str, Encoder]) -> list[Query]:
    """Photos through the image tower, recordings through the audio tower, species names
    through the text tower (see `query_kind`); a kind the pipeline has no tower for is an
    input error."""
    check_towers(queries, encoders)
    check_queries(queries)
    return [
        text_query(q, encoders) if query_kind(q) == "text" else file_query(Path(q), encoders)
        for q in queries
    ]


def file_query(path: Path, encoders: Mapping[str, Encoder], source: str | None = None) -> Query:
    """A photo, or a recording (by its suffix), through its tower; `source` names it in the
    provenance (default: the path as given)."""
    modality = "audio" if path.suffix.lower() in AUDIO_SUFFIXES else "image"
    if modality not in encoders:
        kind = "recording" if modality == "audio" else "photo"
        raise InputError(f"this pipeline has no {modality} encoder for {kind} queries")
    emb = encoders[modality].embed([path])[0]
    return Query(path.stem, source or str(path), emb, modality, file_sha256(path))


def text_query(name: str, encoders: Mapping[str, Encoder]) -> Query:
    """A species name through the text tower (never looked up as a file)."""
    if "text" not in encoders:
        raise InputError("this pipeline has no text encoder for species-name queries")
    emb = encoders["text"].embed([name])[0]
    return Query(name.replace(" ", "_"), name, emb, "text")


CellBlocks = Callable[[str], Iterable[tuple[slice, torch.Tensor, np.ndarray]]]


def cell_blocks(
    store: xr.Dataset, variable: str
) -> Iterator[tuple[slice, torch.Tensor, np.ndarray]]:
    """The store's per-cell vectors of `variable` in blocks of rows: (rows, L2-normalised float32
    [rows, W, D], valid mask [rows, W]). Read block by block and normalised in place (the values
    of `F.normalize`), so memory stays one float32 block; a caller that maps many queries may
    keep the blocks (`MapSession` in the explorer)."""
    h = store.sizes["y"]
    for r0 in range(0, h, ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, h))
        block = torch.from_numpy(np.asarray(store[variable][rows].values, dtype=np.float32))
        ok = np.asarray(store["valid"][rows].values, dtype=bool)
        block.nan_to_num_()  # in place, as F.normalize's own steps below: one float32 copy
        yield rows, block.div_(block.norm(2, -1, keepdim=True).clamp_min(1e-12)), ok


def similarity(
    store: xr.Dataset,
    queries: list[Query],
    mode: str = DEFAULT_MODE,
    delta: float = 0.5,
    target: str | None = None,
    model: ProM3E | None = None,
    blocks: CellBlocks | None = None,
) -> np.ndarray:
    """[Q, H, W] float32 scores (NaN where the cell is outside the AOI or invalid). `blocks`
    gives the store's vectors of a variable (default: `cell_blocks`, read from the store); the
    hybrid target defaults to `hybrid_target`."""
    q = torch.stack([x.embedding for x in queries]).float()
    if mode == "recon":
        directions = [q]
        weights = [1.0]
        variable = "recon_image"
    elif mode == "hybrid":
        target = target or hybrid_target(store)
        variable = f"ctx_{target}"
        if variable not in store:
            stored = ", ".join(str(v) for v in store.data_vars if str(v).startswith("ctx_"))
            raise InputError(
                f"hybrid mode needs the {target} context in the store (it has {stored})"
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
    for rows, block, ok in (blocks or partial(cell_blocks, store))(variable):
        terms = [
            wt * torch.einsum("yxd,qd->qyx", block, d)
            for wt, d in zip(weights, directions, strict=True)
        ]
        score = sum(terms, torch.zeros(()))  # from zero, as before: -0.0 scores become 0.0
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
    blocks: CellBlocks | None = None,
) -> LayerSet:
    """Similarity bands (one per query) and, with a threshold, presence bands (`blocks`: see
    `similarity`)."""
    check_sdm_options(delta, threshold)
    if mode == "hybrid":
        target = target or hybrid_target(store)
    scores = similarity(store, queries, mode, delta, target, model, blocks)
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
        if q.sha256 is not None:
            params[f"query_{q.name}_sha256"] = q.sha256
    units = {
        q.name: "cosine similarity" + (" (rescaled 0-1)" if rescale_01 else "") for q in queries
    }
    classes: dict[str, tuple[str, ...]] = {
        name: ("absent", "present") for name in bands if name.startswith("presence")
    }
    return LayerSet(bands, docs, params, grid, units=units, classes=classes)
