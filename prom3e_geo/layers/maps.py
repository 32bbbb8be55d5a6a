"""From a pipeline and a grid to map layers: the library side of `sdm` and `uncertainty`.

Without `--embeddings`, the embedding store is built on the fly and cached under
`$PROM3E_GEO_CACHE` (default `$XDG_CACHE_HOME/prom3e-geo`, else `~/.cache/prom3e-geo`), keyed by
the pipeline and the grid, so the next map of the same area reuses it (and an interrupted build
resumes).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.inference import PipelineSpec, embed_grid, load_pipeline
from prom3e_geo.layers.sdm import encode_queries, rescale, similarity
from prom3e_geo.store import grid_from_store, open_store, read_manifest


def cache_dir() -> Path:
    root = (
        os.environ.get("PROM3E_GEO_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prom3e-geo"
    )
    return Path(root)


def cached_store(
    spec: PipelineSpec, grid: Grid, progress: Callable[[int, int], None] | None = None, **run
) -> Path:
    """The store for (pipeline, grid), built or finished as needed. It is keyed by the run's
    manifest (models, source, context, resolved precision, software version) and the grid, so
    options that change only the speed (device, batch size, prefetch) share a store."""
    key = hashlib.sha256(
        json.dumps(
            {
                "manifest": load_pipeline(spec).manifest,
                "grid": grid.to_dict(),
                "chunk": grid.chunk_shape,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:20]
    path = cache_dir() / "stores" / f"{key}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    embed_grid(spec, grid, path, progress=progress, **run)
    return path


@dataclass
class LayerSet:
    bands: dict[str, np.ndarray]
    docs: dict[str, str]
    params: dict[str, object]
    grid: Grid
    manifest: dict


def sdm_layers(
    store_path: str | Path,
    queries: Sequence[str],
    spec: PipelineSpec,
    mode: str = "recon",
    delta: float = 0.5,
    target: str = "loc",
    rescale_01: bool = False,
    threshold: float | None = None,
) -> LayerSet:
    """Similarity bands (one per query) and, with a threshold, presence bands."""
    ds = open_store(store_path)
    manifest = read_manifest(store_path)
    grid = grid_from_store(ds)
    pipeline = load_pipeline(
        PipelineSpec(**{**asdict(spec), "context": tuple(manifest["context"])})
    )
    encoders = {**pipeline.cells.encoders}
    encoded = encode_queries(queries, encoders)
    scores = similarity(ds, encoded, mode, delta, target, pipeline.model)
    params: dict[str, object] = {"layer": "sdm", "mode": mode}
    if mode == "hybrid":
        params |= {"delta": delta, "hybrid_target": target}
    if rescale_01:
        scores, ranges = rescale(scores)
        params["rescaled"] = "linear to [0, 1] over the AOI; original ranges " + "; ".join(
            f"{q.name}: {lo:.4f}..{hi:.4f}" for q, (lo, hi) in zip(encoded, ranges, strict=True)
        )
    bands, docs = {}, {}
    for q, band in zip(encoded, scores, strict=True):
        bands[q.name] = band
        docs[q.name] = (
            f"similarity to {q.source} ({mode}{', rescaled to 0-1' if rescale_01 else ''})"
        )
    if threshold is not None:
        params["threshold"] = threshold
        for q, band in zip(encoded, scores, strict=True):
            name = "presence" if len(encoded) == 1 else f"presence_{q.name}"
            bands[name] = np.where(
                np.isfinite(band), (band >= threshold).astype(np.float32), np.nan
            )
            docs[name] = f"1 where the similarity to {q.source} is >= {threshold}"
    params["queries"] = ", ".join(q.source for q in encoded)
    for q in encoded:
        if Path(q.source).is_file():
            params[f"query_{q.name}_sha256"] = hashlib.sha256(
                Path(q.source).read_bytes()
            ).hexdigest()
    return LayerSet(bands, docs, params, grid, manifest)


def store_model(manifest: dict, spec: PipelineSpec | None = None):
    """The ProM3E a store was computed with (from `spec`'s model), refusing another one."""
    from prom3e_geo.errors import InputError

    spec = PipelineSpec(**{**asdict(spec or PipelineSpec()), "context": tuple(manifest["context"])})
    pipeline = load_pipeline(spec)
    if pipeline.manifest["model_sha256"] != manifest.get("model_sha256"):
        raise InputError(
            f"the store was computed with another model ({manifest.get('model')}); "
            "pass that model with --model"
        )
    return pipeline.model


def stored_inputs(ds, valid: np.ndarray, context: Sequence[str], input_dim: int):
    """Row blocks of a store's valid cells as ProM3E inputs built from the stored context
    embeddings: (rows, ok [r, w] bool, x [ok.sum(), 6, input_dim])."""
    import torch

    from prom3e_geo.layers.sdm import ROW_BLOCK
    from prom3e_geo.model.prom3e import MODALITIES

    for r0 in range(0, valid.shape[0], ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, valid.shape[0]))
        ok = valid[rows]
        if not ok.any():
            continue
        x = torch.zeros(int(ok.sum()), len(MODALITIES), input_dim)
        for m in context:
            x[:, MODALITIES.index(m)] = torch.from_numpy(
                np.asarray(ds[f"ctx_{m}"][rows].values, dtype=np.float32)[ok]
            )
        yield rows, ok, x


def uncertainty_layers(
    store_path: str | Path, context: Sequence[str] | None = None, spec: PipelineSpec | None = None
) -> LayerSet:
    """||sigma||_1 for `context` (default: the store's own). Any subset of the store's context is
    computed from the stored context embeddings by ProM3E alone, without re-encoding a cell."""
    from prom3e_geo.errors import InputError
    from prom3e_geo.inference import infer_cells

    ds = open_store(store_path)
    manifest = read_manifest(store_path)
    grid = grid_from_store(ds)
    stored = list(manifest["context"])
    wanted = list(context) if context else stored
    missing = [m for m in wanted if m not in stored]
    if missing:
        raise InputError(
            f"the store has no {', '.join(missing)} embeddings (its context is {'+'.join(stored)})"
        )
    valid = np.asarray(ds["valid"].values, dtype=bool)
    if set(wanted) == set(stored):
        sigma = np.asarray(ds["sigma_l1"].values, dtype=np.float32)
    else:
        import torch

        model = store_model(manifest, spec)
        precision, size = manifest.get("precision", "float32"), (spec or PipelineSpec()).batch_size
        sigma = np.full(grid.shape, np.nan, dtype=np.float32)
        for rows, ok, x in stored_inputs(ds, valid, wanted, model.config.input_dim):
            block = np.full(ok.shape, np.nan, dtype=np.float32)
            block[ok] = torch.cat(
                [infer_cells(model, part, wanted, precision).sigma_l1 for part in x.split(size)]
            ).numpy()
            sigma[rows] = block
    sigma = np.where(valid, sigma, np.nan)
    doc = f"||sigma||_1 = sum exp(logvar / 2), context {'+'.join(wanted)}"
    return LayerSet(
        {"sigma_l1": sigma},
        {"sigma_l1": doc},
        {"layer": "uncertainty", "sigma_context": "+".join(wanted)},
        grid,
        manifest,
    )


def manifest_tags(manifest: dict) -> dict[str, str]:
    """Provenance tags from a store's manifest (model id and hash, source, context)."""
    source = manifest.get("source") or {}
    tags = {
        "model": str(manifest.get("model")),
        "model_sha256": str(manifest.get("model_sha256")),
        "source": json.dumps(source),
        "context": "+".join(manifest.get("context", [])),
    }
    if manifest.get("model") == "demo" or source.get("synthetic"):
        tags["demo_world"] = (
            "SYNTHETIC: made from the prom3e-geo demo world (synthetic imagery, photos and species ranges)"
        )
    return tags


ICA_TOKENS = ("mu", "recon_image", "ctx_sat", "ctx_loc", "ctx_env")


def ica_layers(
    store_path: str | Path,
    token: str = "mu",
    seed: int = 0,
    max_fit: int = 50_000,
    spec: PipelineSpec | None = None,
) -> LayerSet:
    """Three independent components of a per-cell embedding (FastICA, fitted on at most
    `max_fit` random valid cells), each stretched to 0-1 between its 2nd and 98th percentiles
    and signed so that its long tail is positive: an RGB composite as in the supplement's maps.

    `token` is a stored array (`mu`, `recon_image`, `ctx_<m>`) or `register:K`, ProM3E's K-th
    register token (1-based), recomputed from the stored context embeddings with the store's
    model (given by `spec`)."""
    from sklearn.decomposition import FastICA

    from prom3e_geo.errors import InputError

    ds = open_store(store_path)
    manifest = read_manifest(store_path)
    available = [t for t in ICA_TOKENS if t in ds] + ["register:K"]
    grid = grid_from_store(ds)
    valid = np.asarray(ds["valid"].values, dtype=bool)
    if valid.sum() < 10:
        raise InputError(f"the store has {int(valid.sum())} valid cells; ICA needs at least 10")
    if token.startswith("register:") and token.removeprefix("register:").isdigit():
        values = _register_tokens(ds, manifest, valid, int(token.removeprefix("register:")), spec)
    elif token in available:
        values = np.asarray(ds[token].values, dtype=np.float32)[valid]
    else:
        raise InputError(
            f"the store has no {token!r} embeddings (available: {', '.join(available)})"
        )
    rng = np.random.default_rng(seed)
    fit = values[rng.choice(len(values), min(max_fit, len(values)), replace=False)]
    ica = FastICA(n_components=3, whiten="unit-variance", random_state=seed, max_iter=1000)
    components = ica.fit(fit).transform(values)
    bands, docs = {}, {}
    for k in range(3):
        c = components[:, k]
        if np.mean((c - c.mean()) ** 3) < 0:
            c = -c
        lo, hi = np.percentile(c, [2, 98])
        band = np.full(grid.shape, np.nan, dtype=np.float32)
        band[valid] = np.clip((c - lo) / max(hi - lo, 1e-12), 0, 1)
        name = ("red", "green", "blue")[k]
        bands[f"ica_{k + 1}"] = band
        docs[f"ica_{k + 1}"] = f"independent component {k + 1} of {token} ({name}), 2-98% stretch"
    return LayerSet(
        bands,
        docs,
        {"layer": "ica", "ica_token": token, "ica_seed": seed},
        grid,
        manifest,
    )


def _register_tokens(ds, manifest: dict, valid: np.ndarray, k: int, spec) -> np.ndarray:
    """ProM3E's k-th register token for every valid cell, in row-major order."""
    import torch

    from prom3e_geo.errors import InputError
    from prom3e_geo.model.prom3e import MODALITIES, visibility

    model = store_model(manifest, spec)
    registers = model.config.num_register_tokens
    if not 1 <= k <= registers:
        raise InputError(f"register:{k}: the model has registers 1-{registers}")
    context = list(manifest["context"])
    visible = [MODALITIES.index(m) for m in context]
    device = next(model.parameters()).device
    blocks = []
    with torch.no_grad():
        for _, _, x in stored_inputs(ds, valid, context, model.config.input_dim):
            hidden = model.encode(x.to(device), visibility(len(x), visible, device=device))[2]
            blocks.append(hidden[:, 1 + k].float().cpu().numpy())  # after [mu], [logvar]
    return np.concatenate(blocks)
