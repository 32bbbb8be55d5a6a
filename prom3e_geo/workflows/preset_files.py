"""`weights list|info|download` and `env prepare`: a preset's files, listed and fetched.

What a preset is made of, what of it is cached, fetching it ahead of time (for an offline
cluster), the novelty reference of a model, and the WorldClim raster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.encoders.worldclim_cache import worldclim_path, worldclim_raster
from prom3e_geo.engine.pipeline import PRESETS
from prom3e_geo.engine.presets import (
    WORLDCLIM,
    WeightsRecipe,
    known_parts,
    weights_recipe,
)
from prom3e_geo.errors import DownloadError, InputError, UnknownNameError, WeightsError
from prom3e_geo.hub import (
    CachedRepo,
    Fetched,
    HubRef,
    cached_repos,
    fetch_weights,
    offline,
    offline_hint,
)
from prom3e_geo.io.outputs import check_output
from prom3e_geo.settings import Settings


@dataclass(frozen=True)
class PartInfo:
    part: str  # model, a modality, or config
    spec: str  # what the preset names
    repo: HubRef | None  # None: not from the hub
    cached: CachedRepo | None


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str
    parts: list[PartInfo]
    env_raster: str | None  # a path, or the cached WorldClim raster
    env_ready: bool
    source: str | None
    patch: dict[str, float] | None
    note: str | None = None  # why the list is incomplete (its configuration is not at hand)


def preset_names() -> list[str]:
    return PRESETS.names()


def preset_summary(name: str) -> str:
    """The first paragraph of a preset's docstring, on one line."""
    doc = (PRESETS.get(name).__doc__ or "").strip().split("\n\n")[0]
    return " ".join(doc.split())


def preset_info(name: str, settings: Settings | None = None) -> PresetInfo:
    """A preset's parts and what of them is cached (reads the preset's configuration, from the
    cache when offline). A status: when the configuration cannot be had (offline with an empty
    cache, or the hub unreachable), the parts known without it are listed, none cached."""
    settings = settings or Settings.from_environment()
    note = None
    try:
        recipe = _recipe(name)
    except (WeightsError, DownloadError) as exc:
        recipe = known_parts(name)
        if recipe is None or (isinstance(exc, WeightsError) and not offline()):
            raise
        config = recipe.origins["config"]
        note = f"the encoders are named by {config}'s config.json, which cannot be read now: {exc}"
    if recipe is None:
        return _own_parts(name)
    cached = cached_repos()
    parts = []
    for part, origin in recipe.origins.items():
        repo_id = origin.split("@")[0]
        parts.append(PartInfo(part, repo_id, HubRef(repo_id), cached.get(repo_id)))
    hub = recipe.hub_downloads()
    for part, spec in {"model": recipe.model, **recipe.encoders}.items():
        ref = hub[part][0] if part in hub else None
        parts.append(PartInfo(part, spec, ref, cached.get(ref.repo_id) if ref else None))
    if "audio processor" in hub:
        ref = hub["audio processor"][0]
        parts.append(PartInfo("audio processor", str(ref), ref, cached.get(ref.repo_id)))
    env, ready = _env(recipe, settings)
    description = preset_summary(name) if name in PRESETS else f"preset recipe {name}"
    return PresetInfo(name, description, parts, env, ready, recipe.source, recipe.patch, note)


def _own_parts(name: str) -> PresetInfo:
    """A preset that ships its own parts (the demo world): built and listed."""
    parts = PRESETS.get(name)("cpu")
    listed = [PartInfo("model", f"ProM3E sha256 {parts.weights_sha256[:12]}", None, None)]
    listed += [PartInfo(m, spec, None, None) for m, spec in parts.encoder_specs.items()]
    return PresetInfo(name, preset_summary(name), listed, None, True, parts.source, parts.patch)


def download_preset(
    name: str, settings: Settings | None = None, report: Callable[[str], None] = print
) -> list[Fetched]:
    """Fetch every hub part of a preset (and prepare its WorldClim raster) into the caches."""
    settings = settings or Settings.from_environment()
    recipe = _recipe(name)
    if recipe is None:
        return []
    from prom3e_geo.encoders.clip import CLIP_TOKENIZER_REPO, fetch_clip_tokenizer, has_tokenizer

    fetched = []
    for part, (ref, configs, choices) in recipe.hub_downloads().items():
        report(f"{part}: {ref}")
        fetched.append(fetch_weights(ref, configs, choices, f"{part} weights", offline_hint(name)))
        if part == "text" and not has_tokenizer(fetched[-1].path):
            report(f"text tokenizer: {CLIP_TOKENIZER_REPO}")
            fetched.append(fetch_clip_tokenizer())
    if recipe.env_raster == WORLDCLIM:
        report("environment: WorldClim 2.1 (5 arc-minutes)")
        worldclim_raster(settings)
    return fetched


def prepare_environment(
    out: Path,
    source: Path | None = None,
    overwrite: bool = False,
    settings: Settings | None = None,
    report: Callable[[str], None] = print,
) -> Path:
    """`env prepare`: the 20-band WorldClim feature raster at `out`."""
    from prom3e_geo.worldclim import prepare_worldclim

    settings = settings or Settings.from_environment()
    out = check_output(out, overwrite)
    downloads = settings.cache_dir / "worldclim" / "downloads"
    return prepare_worldclim(out, source, settings.worldclim_url, downloads, report)


@dataclass(frozen=True)
class ReferenceSummary:
    path: Path
    rows: int  # samples in the reference
    observations: int  # valid observations in the file
    context: tuple[str, ...]
    seconds: float


def build_novelty_reference(
    name: str,
    observations: Path,
    out: Path,
    context: Sequence[str] = ("loc", "env"),
    rows: int = 2000,
    seed: int = 0,
    overwrite: bool = False,
    report: Callable[[str], None] = print,
    thin: float = 1.0,
) -> ReferenceSummary:
    """`weights reference`: a novelty reference for preset `name` (or a weights path) from an
    observation file (iNaturalist / GBIF CSV, zip or Parquet): up to `rows` observations drawn
    at random (seeded), encoded as the map's cells are (locations -> loc, the preset's
    environment -> env, its imagery source -> sat) and with their places, with its origin
    recorded in the file.

    With `thin` (degrees; 0: off) at most one observation per `thin` x `thin` degree box is
    drawn: the reference then covers where the observations reach rather than where observers
    crowd, so a map's cells in thinly observed but familiar country are not called novel."""
    import time

    import numpy as np
    import torch

    from prom3e_geo.engine.pipeline import load_pipeline
    from prom3e_geo.engine.spec import PipelineSpec
    from prom3e_geo.hashing import file_sha256
    from prom3e_geo.io.outputs import atomic_output
    from prom3e_geo.layers.novelty import K_NEAREST, PLACE, NoveltyReference, place_vectors
    from prom3e_geo.model.prom3e import MODALITIES
    from prom3e_geo.observations import ObservationReader
    from prom3e_geo.version import __version__

    if rows <= K_NEAREST:
        raise InputError(f"--rows must be more than {K_NEAREST}, got {rows}")
    out = check_output(out, overwrite)
    reader = ObservationReader(observations)
    chunks = list(reader)
    lon = np.concatenate([c.lon for c in chunks]) if chunks else np.empty(0)
    lat = np.concatenate([c.lat for c in chunks]) if chunks else np.empty(0)
    if lon.size <= K_NEAREST:
        raise InputError(
            f"{observations} has {lon.size} valid observations; a reference needs more than "
            f"{K_NEAREST} ({reader.report.summary()})"
        )
    if thin < 0:
        raise InputError(f"--thin must be >= 0 degrees, got {thin}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    candidates = rng.permutation(lon.size)
    if thin > 0:  # the first of a random order in each box: one random observation per box
        boxes = np.floor(np.c_[lon, lat][candidates] / thin).astype(np.int64)
        candidates = candidates[np.sort(np.unique(boxes, axis=0, return_index=True)[1])]
    if candidates.size <= K_NEAREST:
        raise InputError(f"only {candidates.size} boxes of {thin} degrees hold observations")
    pick = np.sort(candidates[:rows])
    pipeline = load_pipeline(PipelineSpec(model=name, context=tuple(context)))
    report(f"encoding {pick.size:,} of {lon.size:,} observations ({'+'.join(context)})")
    x, ok = pipeline.cells.embed(lon[pick], lat[pick], context)
    if int(ok.sum()) <= K_NEAREST:
        raise InputError(f"only {int(ok.sum())} observations have every input of {context}")
    embeddings = {m: x[torch.from_numpy(ok), MODALITIES.index(m)] for m in context}
    embeddings[PLACE] = place_vectors(lon[pick][ok], lat[pick][ok])
    manifest = pipeline.manifest
    origin = {
        "observations": str(observations),
        "observations_sha256": file_sha256(observations),
        "rows": str(int(ok.sum())),
        "seed": str(seed),
        "thin_degrees": str(thin),
        "model": str(manifest["model"]),
        "model_sha256": str(manifest["model_sha256"]),
        "context": "+".join(context),
        "source": json.dumps(manifest.get("source"), sort_keys=True, default=str),
        "software": f"prom3e-geo {__version__}",
    }
    with atomic_output(out, overwrite) as tmp:
        NoveltyReference(embeddings, origin).save(tmp)
    return ReferenceSummary(
        out, int(ok.sum()), int(lon.size), tuple(context), time.perf_counter() - t0
    )


def _recipe(name: str) -> WeightsRecipe | None:
    recipe = weights_recipe(name)
    if recipe is None and name not in PRESETS:
        raise UnknownNameError(
            f"unknown weights preset {name!r} (one of {', '.join(PRESETS.names())}, "
            "or a preset recipe .yaml)"
        )
    return recipe


def _env(recipe: WeightsRecipe, settings: Settings) -> tuple[str | None, bool]:
    if recipe.env_raster == WORLDCLIM:
        path = worldclim_path(settings)
        return str(path), path.is_file()
    raster = recipe.env_raster
    return raster, raster is not None and Path(raster).is_file()
