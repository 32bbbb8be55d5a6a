"""`weights list|info|download` and `env prepare`: what a preset is made of, what of it is
cached, fetching it ahead of time (for an offline cluster), and the WorldClim raster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.engine.pipeline import PRESETS
from prom3e_geo.engine.presets import (
    WORLDCLIM,
    WeightsRecipe,
    known_parts,
    weights_recipe,
    worldclim_path,
    worldclim_raster,
)
from prom3e_geo.errors import DownloadError, UnknownNameError, WeightsError
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
    patch: dict | None
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
    hub = recipe.hub_parts()
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
    for part, (ref, configs, choices) in recipe.hub_parts().items():
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
    return recipe.env_raster, bool(recipe.env_raster) and Path(recipe.env_raster).is_file()
