"""Cell inference: context modalities at cell centres -> ProM3E latent and reconstructions.

`CellContext` gathers the context modalities of cells (satellite patch -> sat encoder, location ->
loc encoder, environment vector -> env encoder) into the [N, 6, 512] input of ProM3E, and
`infer_cells` runs ProM3E with that visibility, returning what the map layers need: mu,
||sigma||_1 and the reconstructed image embedding (the SDM layer compares it with query photos).

`embed_grid` runs that over a whole grid into an `EmbeddingStore`: chunk by chunk, in fixed-size
batches, with the inputs of the next `prefetch` batches (patch fetches are I/O) gathered on
threads while the current one is encoded, so memory is bounded by the batch whatever the grid
size. Finished chunks
are skipped on a re-run; a store made by a different pipeline is refused. `workers` or
`scheduler` run one Dask task per chunk instead, each writing its own region of the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError
from prom3e_geo.imagery.base import PatchSource
from prom3e_geo.model.prom3e import MODALITIES, ProM3E
from prom3e_geo.runtime import autocast, release_freed_memory
from prom3e_geo.store import ChunkResult

CONTEXT_MODALITIES = ("sat", "loc", "env")


def parse_context(spec: str | Sequence[str]) -> list[str]:
    """`sat,loc,env` -> ['sat', 'loc', 'env'] (validated, order of the model)."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    unknown = [n for n in names if n not in CONTEXT_MODALITIES]
    if unknown or not names:
        raise InputError(f"context {spec!r}: choose one or more of {', '.join(CONTEXT_MODALITIES)}")
    return [m for m in CONTEXT_MODALITIES if m in names]


@dataclass
class CellContext:
    """Everything needed to embed the context modalities of cells."""

    encoders: dict[str, Encoder]
    source: PatchSource | None = None
    environment: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = (
        None  # lon, lat -> raw vectors
    )

    def gather(
        self, lon: np.ndarray, lat: np.ndarray, context: Sequence[str]
    ) -> tuple[dict, np.ndarray]:
        """Raw inputs per context modality (patch fetches happen here) and [N] validity."""
        lon, lat = np.ravel(lon), np.ravel(lat)
        raw: dict[str, object] = {}
        valid = np.ones(lon.size, dtype=bool)
        for name in context:
            if name not in self.encoders:
                raise InputError(f"no {name} encoder for the context")
            if name == "sat":
                if self.source is None:
                    raise InputError("the sat context needs an imagery source")
                batch = self.source.fetch(lon, lat)
                valid &= batch.valid
                raw[name] = batch.patches[..., :3]  # the encoders see RGB
            elif name == "loc":
                raw[name] = np.c_[lat, lon]
            else:
                if self.environment is None:
                    raise InputError("the env context needs an environment raster")
                raw[name] = self.environment(lon, lat)
        return raw, valid

    def encode(self, raw: dict, n: int) -> torch.Tensor:
        """[N, 6, 512] ProM3E input with the gathered modalities encoded, each as one batch."""
        x = torch.zeros(n, len(MODALITIES), 512)
        for name, values in raw.items():
            x[:, MODALITIES.index(name)] = self.encoders[name].embed(values, batch_size=max(n, 1))
        return x

    def embed(
        self, lon: np.ndarray, lat: np.ndarray, context: Sequence[str]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """([N, 6, 512] inputs with the context modalities filled, [N] validity)."""
        raw, valid = self.gather(lon, lat, context)
        return self.encode(raw, valid.size), valid


@dataclass
class CellOutputs:
    mu: torch.Tensor  # [N, E]
    sigma_l1: torch.Tensor  # [N]
    recon_image: torch.Tensor  # [N, 512], L2-normalised


@torch.inference_mode()
def infer_cells(
    model: ProM3E, x: torch.Tensor, context: Sequence[str], precision: str = "float32"
) -> CellOutputs:
    """ProM3E on cell inputs with the context modalities visible (one visibility for all, so masked
    tokens are dropped), decoding only the image embedding, under `precision` (bf16 or float32)."""
    device = next(model.parameters()).device
    visible = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool, device=device)
    visible[:, [MODALITIES.index(m) for m in context]] = True
    x = x.to(device, non_blocking=device.type == "cuda")
    with autocast(device, precision):
        mu, logvar, _ = model.encode(x, visible)
        recon = model.decode(mu, [0])[:, 0]
    # unit vectors again in float32: normalised in bf16 their norms are off by up to 0.5%
    return CellOutputs(
        F.normalize(mu.float(), dim=-1).cpu(),
        torch.exp(0.5 * logvar.float()).sum(-1).cpu(),
        F.normalize(recon.float(), dim=-1).cpu(),
    )


# -- whole grids ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineSpec:
    """What computes the cells, in a picklable form that Dask workers rebuild from.

    `model` is `demo` (the demo world's encoders, source and ProM3E) or a ProM3E weights path;
    for a real model, `encoders` maps each context modality to its encoder spec, `source` is the
    imagery source spec and `env_raster` the 20-band environment raster.
    """

    model: str = "demo"
    source: str = "demo"
    context: tuple[str, ...] = CONTEXT_MODALITIES
    encoders: tuple[tuple[str, str], ...] = ()
    env_raster: str | None = None
    device: str = "auto"
    batch_size: int = 1024
    prefetch: int = 2  # batches gathered ahead, each on its own thread
    precision: str = "auto"  # auto, bf16 or float32 (runtime.resolve_precision)


@dataclass
class Pipeline:
    spec: PipelineSpec
    model: ProM3E
    cells: CellContext
    manifest: dict
    precision: str  # resolved: bf16 or float32


_PIPELINES: dict[PipelineSpec, Pipeline] = {}


def load_pipeline(spec: PipelineSpec) -> Pipeline:
    """Build (once per process) the models a spec names."""
    if spec in _PIPELINES:
        return _PIPELINES[spec]
    from prom3e_geo import __version__
    from prom3e_geo.runtime import flush_subnormals_, resolve_device, resolve_precision

    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    if spec.model == "demo":
        from prom3e_geo.demo.build import load_demo

        demo = load_demo(device=str(device))
        model, cells = demo.prom3e, demo.context()
        model_id, weights = "demo", demo.folder / "prom3e.safetensors"
        if spec.source != "demo":
            from prom3e_geo.imagery import open_source

            cells.source = open_source(spec.source)
    else:
        from prom3e_geo.encoders import build_encoder
        from prom3e_geo.encoders.environment import EnvironmentSampler
        from prom3e_geo.imagery import open_source
        from prom3e_geo.model.checkpoint import load_prom3e

        loaded = load_prom3e(spec.model, device)
        model, model_id, weights = loaded.model, spec.model, loaded.weights_path
        encoders = {m: build_encoder(m, s, str(device)) for m, s in spec.encoders}
        sampler = EnvironmentSampler(spec.env_raster) if spec.env_raster else None
        cells = CellContext(
            encoders,
            open_source(spec.source) if "sat" in spec.context else None,
            sampler.sample if sampler else None,
        )
    from prom3e_geo.io.provenance import file_sha256

    for encoder in cells.encoders.values():
        encoder.amp = precision
    manifest = {
        "software": f"prom3e-geo {__version__}",
        "model": model_id,
        "model_sha256": file_sha256(weights),
        "source": cells.source.describe() if cells.source is not None else None,
        "context": list(spec.context),
        "encoders": dict(spec.encoders) or ("demo" if spec.model == "demo" else {}),
        "env_raster": spec.env_raster,
        "precision": precision,
    }
    model = flush_subnormals_(model.to(device).eval())
    pipeline = Pipeline(spec, model, cells, manifest, precision)
    _PIPELINES[spec] = pipeline
    return pipeline


def compute_chunk(pipeline: Pipeline, grid, chunk) -> ChunkResult:
    """All inside cells of one chunk, in batches, the inputs of the next `spec.prefetch` batches
    gathered on threads while the current one is encoded."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    inside = np.flatnonzero(grid.mask[chunk.rows, chunk.cols].ravel())
    lon, lat = (a.ravel()[inside] for a in grid.lonlat(chunk))
    size, context, ahead = pipeline.spec.batch_size, pipeline.spec.context, pipeline.spec.prefetch
    parts: dict[str, list] = {k: [] for k in ("mu", "sigma", "recon", "valid")}
    ctx_parts: dict[str, list] = {m: [] for m in context}
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        starts = iter(range(0, inside.size, size))

        def submit(start: int):
            part = slice(start, start + size)
            return pool.submit(pipeline.cells.gather, lon[part], lat[part], context)

        queue = deque(submit(start) for start in islice(starts, ahead))
        while queue:
            raw, valid = queue.popleft().result()
            queue.extend(submit(start) for start in islice(starts, 1))
            x = pipeline.cells.encode(raw, valid.size)
            out = infer_cells(pipeline.model, x, context, pipeline.precision)
            parts["mu"].append(out.mu.numpy())
            parts["sigma"].append(out.sigma_l1.numpy())
            parts["recon"].append(out.recon_image.numpy())
            parts["valid"].append(valid)
            for m in context:
                ctx_parts[m].append(x[:, MODALITIES.index(m)].numpy())
    return ChunkResult(
        chunk,
        inside,
        np.concatenate(parts["mu"]),
        np.concatenate(parts["sigma"]),
        np.concatenate(parts["recon"]),
        {m: np.concatenate(v) for m, v in ctx_parts.items()},
        np.concatenate(parts["valid"]),
    )


@dataclass
class EmbedSummary:
    store: str
    chunks_total: int
    chunks_done_before: int
    chunks_computed: int
    cells_valid: int
    cells_invalid: int
    seconds: float


def _dask_chunk(spec: PipelineSpec, grid, path: str, chunk, threads: int) -> tuple[int, int]:
    """One Dask task: compute a chunk and write its region (idempotent: recomputing rewrites the
    same values, so a lost worker's chunk can simply run again). It uses the submitting
    process's intra-op thread count: float summation order follows the thread count, and equal
    counts make the result bit-identical to a single-process run."""
    from prom3e_geo.store import EmbeddingStore

    torch.set_num_threads(threads)
    result = compute_chunk(load_pipeline(spec), grid, chunk)
    EmbeddingStore(path, grid).write(result)
    counts = int(result.valid.sum()), int((~result.valid).sum())
    del result
    release_freed_memory()
    return counts


def embed_grid(
    spec: PipelineSpec,
    grid,
    out: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbedSummary:
    """Fill (or finish) the embedding store at `out` for every chunk of `grid`."""
    import time

    from prom3e_geo.store import EmbeddingStore

    started = time.perf_counter()
    pipeline = load_pipeline(spec)
    latent = pipeline.model.config.embed_dim
    manifest = {**pipeline.manifest, "grid": grid.to_dict(), "chunk_shape": list(grid.chunk_shape)}
    store = EmbeddingStore.open_or_create(
        out,
        grid,
        manifest,
        latent=latent,
        embed=pipeline.model.config.input_dim,
        context=list(spec.context),
    )
    pending = store.pending()
    total = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
    done_before = total - len(pending)
    valid_cells = invalid_cells = 0
    if progress:
        progress(done_before, total)
    if pending and (workers or scheduler):
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = (
            None
            if scheduler
            else LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        )
        with Client(scheduler or cluster) as client:
            futures = [
                client.submit(
                    _dask_chunk,
                    spec,
                    grid,
                    str(out),
                    c,
                    torch.get_num_threads(),
                    pure=False,
                    retries=3,
                )
                for c in pending
            ]
            for i, future in enumerate(as_completed(futures), start=1):
                ok, bad = future.result()
                valid_cells, invalid_cells = valid_cells + ok, invalid_cells + bad
                if progress:
                    progress(done_before + i, total)
        if cluster is not None:
            cluster.close()
    else:
        for i, chunk in enumerate(pending, start=1):
            result = compute_chunk(pipeline, grid, chunk)
            store.write(result)
            valid_cells += int(result.valid.sum())
            invalid_cells += int((~result.valid).sum())
            del result
            release_freed_memory()
            if progress:
                progress(done_before + i, total)
    store.finish()
    return EmbedSummary(
        str(out),
        total,
        done_before,
        len(pending),
        valid_cells,
        invalid_cells,
        time.perf_counter() - started,
    )
