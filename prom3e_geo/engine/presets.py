"""Weights presets made of released parts: a ProM3E, its six encoders, the environment raster and
the imagery the satellite tower was trained on.

* `taxabind`: ProM3E from `MVRL/ProM3E` and the encoders that `MVRL/taxabind-config`'s
  `config.json` names (`clip` for the photo and text towers, `sat_encoder`, `location_encoder`,
  `env_encoder` -- spelt `sinr` in rshf's `TaxaBindConfig`, both are read -- and
  `audio_encoder`, whose features follow `get_audio_processor` when named) with its
  preprocessing fields, read at run time; WorldClim prepared into the cache; imagery from
  Sentinel-2 cloudless 2020 (`s2cloudless`), the mosaic the satellite tower was trained on, as
  256 px patches of 1,024 m (`docs/s2cloudless.md`).
* a YAML recipe naming the same parts (`--weights my-preset.yaml`)::

      model: MVRL/ProM3E                 # ProM3E weights: hub id or path
      encoders:                          # modality -> hub id, path or registered name
        sat: ORG/sat-tower
        loc: geoclip
      env_raster: worldclim              # or a 20-band raster path
      source: s2cloudless                # default imagery source
      patch: {size: 256, resolution: 4}

Parts are fetched when first needed: a map loads ProM3E and the context encoders, a query loads
its tower; `weights download` fetches them all ahead of time (`hub_downloads`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, field_validator

from prom3e_geo.encoders.audio import AudioPreprocessing
from prom3e_geo.encoders.clip import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from prom3e_geo.encoders.registry import HUB_FILES
from prom3e_geo.encoders.worldclim_cache import WorldClimEnvironment
from prom3e_geo.engine.cells import Environment
from prom3e_geo.engine.parts import TAXABIND_PATCH, PipelineParts
from prom3e_geo.errors import WeightsError
from prom3e_geo.hub import MIXIN_FILES, HubRef, download_snapshot, offline_hint, parse_hub_ref
from prom3e_geo.model.prom3e import MODALITIES
from prom3e_geo.recipes import RecipeModel, parse_recipe, read_yaml
from prom3e_geo.settings import Settings

PROM3E_REPO = "MVRL/ProM3E"
TAXABIND_CONFIG_REPO = "MVRL/taxabind-config"
WORLDCLIM = "worldclim"  # env_raster: WorldClim 2.1 prepared once into the cache
# the towers MVRL/taxabind-config names: every spelling MVRL has used for each (config.json at
# 9b4982c writes `env_encoder`; rshf's TaxaBindConfig documents `sinr`) -> the modalities it
# serves; the audio tower is optional (only a recording query needs it)
TAXABIND_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("clip",): ("image", "text"),
    ("sat_encoder",): ("sat",),
    ("location_encoder",): ("loc",),
    ("env_encoder", "sinr"): ("env",),
    ("audio_encoder",): ("audio",),
}
OPTIONAL_FIELDS = {("audio_encoder",)}
AUDIO_PROCESSOR_FIELD = "get_audio_processor"  # a ClapProcessor repository (rshf)


@dataclass(frozen=True)
class WeightsRecipe:
    """The parts of a weights preset (see the module docstring)."""

    name: str
    model: str
    encoders: dict[str, str]
    env_raster: str | None = WORLDCLIM
    source: str | None = "s2cloudless"
    patch: dict[str, float] = field(default_factory=lambda: dict(TAXABIND_PATCH))
    preprocessing: dict[str, Preprocessing | AudioPreprocessing] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # part -> ORG/NAME@COMMIT (configs)

    def hub_downloads(self) -> dict[str, tuple[HubRef, list[str], list[list[str]]]]:
        """part -> (repository, configuration files, weight-file choices) of every hub part."""
        parts = {}
        model = parse_hub_ref(self.model)
        if model is not None:
            parts["model"] = (model, *MIXIN_FILES)
        for modality, spec in self.encoders.items():
            ref = parse_hub_ref(spec)
            if ref is not None:
                parts[modality] = (ref, *HUB_FILES[modality])
        audio = self.preprocessing.get("audio")
        processor = getattr(audio, "processor", None)
        ref = parse_hub_ref(processor) if processor else None
        if ref is not None:
            parts["audio processor"] = (ref, ["preprocessor_config.json"], [[]])
        return parts


def taxabind_recipe() -> WeightsRecipe:
    """The `taxabind` preset, from `MVRL/taxabind-config`'s config.json as the hub has it now."""
    hint = offline_hint("taxabind")
    fetched = download_snapshot(
        HubRef(TAXABIND_CONFIG_REPO), ["config.json"], "TaxaBind configuration", hint
    )
    where = f"{TAXABIND_CONFIG_REPO}@{fetched.commit[:7]}"
    try:
        config = json.loads((fetched.path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{where}: config.json cannot be read: {exc}") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: config.json holds no object")
    encoders = {}
    for fields, modalities in TAXABIND_FIELDS.items():
        value = next((config[f] for f in fields if isinstance(config.get(f), str)), None)
        if value is None and fields not in OPTIONAL_FIELDS:
            raise WeightsError(
                f"{where}: config.json names no {modalities[0]} tower (field {' or '.join(fields)})"
            )
        if value is not None:
            encoders.update(dict.fromkeys(modalities, value))
    if parse_hub_ref(encoders["image"]) is None:
        raise WeightsError(f"{where}: clip = {encoders['image']!r} names no hub repository")
    mean = tuple(config.get("normalize_mean", IMAGENET_MEAN))
    std = tuple(config.get("normalize_std", IMAGENET_STD))
    photo = Preprocessing(int(config.get("image_crop", 224)), config.get("image_resize"), mean, std)
    sat = Preprocessing(int(config.get("sat_crop", 224)), config.get("sat_resize"), mean, std)
    processor = config.get(AUDIO_PROCESSOR_FIELD)
    audio = AudioPreprocessing(
        int(config.get("audio_sample_rate", 48_000)),
        float(config.get("audio_max_length_s", 10)),
        str(config.get("audio_padding", "repeatpad")),
        config.get("audio_truncation"),
        processor if isinstance(processor, str) else None,
    )
    return WeightsRecipe(
        "taxabind",
        PROM3E_REPO,
        encoders,
        preprocessing={"image": photo, "sat": sat, "audio": audio},
        origins={"config": fetched.origin},
    )


class PatchSettings(RecipeModel):
    """The satellite patches a preset's sat tower expects."""

    size: int = Field(description="Patch side in pixels.", gt=0)
    resolution: float = Field(description="Metres per pixel.", gt=0)


class PresetRecipe(RecipeModel):
    """A user's weights preset (`--weights my-preset.yaml`): released or own parts by name."""

    model: str = Field(description="ProM3E weights: hub id (ORG/NAME[@REV]) or path.")
    encoders: dict[str, str] = Field(
        default_factory=dict,
        description="Modality -> encoder weights: hub id, path or registered name.",
    )
    env_raster: str | None = Field(
        WORLDCLIM, description="20-band environment raster path, or worldclim (the cache's)."
    )
    source: str | None = Field("s2cloudless", description="Default imagery source spec.")
    patch: PatchSettings = Field(
        default_factory=lambda: PatchSettings.model_validate(TAXABIND_PATCH),
        description="The imagery the satellite tower was trained on: size and resolution.",
    )

    @field_validator("encoders")
    @classmethod
    def _known_modalities(cls, value: dict[str, str]) -> dict[str, str]:
        for modality in value:
            if modality not in MODALITIES:
                raise ValueError(f"unknown modality {modality!r}{_hint(modality, MODALITIES)}")
        return value


def read_weights_recipe(path: str | Path) -> WeightsRecipe:
    """A user's preset recipe (YAML); unknown keys, modalities and wrong value types are refused
    in one line naming the key and the file."""
    data = parse_recipe(PresetRecipe, read_yaml(path), str(path))
    return WeightsRecipe(
        str(path),
        data.model,
        dict(data.encoders),
        data.env_raster,
        data.source,
        data.patch.model_dump(),
    )


def _hint(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def is_recipe_path(name: str) -> bool:
    return str(name).lower().endswith((".yaml", ".yml"))


def weights_recipe(name: str) -> WeightsRecipe | None:
    """The recipe of a preset name or YAML path; None for presets that are not made of
    released parts (the demo world ships its own)."""
    preset = _recipe_preset(name)
    if preset is not None:
        return preset.recipe()
    if is_recipe_path(name):
        return read_weights_recipe(name)
    return None


def known_parts(name: str) -> WeightsRecipe | None:
    """What is known of a released preset without its configuration (offline, nothing cached):
    its ProM3E and the repository that names its encoders."""
    preset = _recipe_preset(name)
    return preset.offline if preset is not None else None


def _recipe_preset(name: str) -> RecipePreset | None:
    """The registered preset `name` if it is made of released parts."""
    # the registry lives with the pipeline, which imports this module: looked up when asked
    from prom3e_geo.engine.pipeline import PRESETS

    preset = PRESETS.get(name) if name in PRESETS else None
    return preset if isinstance(preset, RecipePreset) else None


def recipe_parts(recipe: WeightsRecipe, device: str = "cpu") -> PipelineParts:
    """ProM3E loaded now; the encoders left to the pipeline, which builds them when needed."""
    from prom3e_geo.model.checkpoint import load_prom3e

    hint = offline_hint(recipe.name)
    loaded = load_prom3e(recipe.model, device, hint=hint)
    origins = dict(recipe.origins)
    if loaded.origin:
        origins["model"] = loaded.origin
    environment: Environment | None = None
    if recipe.env_raster == WORLDCLIM:
        environment = WorldClimEnvironment(Settings.from_environment())
    elif recipe.env_raster:
        from prom3e_geo.encoders.environment import EnvironmentSampler

        environment = EnvironmentSampler(recipe.env_raster).sample
    return PipelineParts(
        model=loaded.model,
        weights_sha256=loaded.sha256,
        encoders={},
        encoder_specs=dict(recipe.encoders),
        environment=environment,
        source=recipe.source,
        patch=recipe.patch,
        preprocessing=dict(recipe.preprocessing),
        origins=origins,
        hint=hint,
    )


@dataclass(frozen=True)
class RecipePreset:
    """A model preset made of released parts, as the `prom3e_geo.presets` registry holds it:
    called with a device it builds the parts; it also tells what it is made of (`recipe`, read
    at run time) and what is known of it offline (`offline`)."""

    recipe: Callable[[], WeightsRecipe]
    offline: WeightsRecipe
    summary: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "__doc__", self.summary)  # what `weights list` shows

    def __call__(self, device: str = "cpu") -> PipelineParts:
        return recipe_parts(self.recipe(), device)


taxabind_preset = RecipePreset(
    taxabind_recipe,
    WeightsRecipe("taxabind", PROM3E_REPO, {}, origins={"config": TAXABIND_CONFIG_REPO}),
    "The released ProM3E (MVRL/ProM3E) with the TaxaBind encoders that MVRL/taxabind-config "
    "names, WorldClim 2.1 and Sentinel-2 cloudless 2020 (the imagery its satellite tower saw).",
)
