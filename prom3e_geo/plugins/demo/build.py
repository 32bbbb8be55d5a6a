"""Build the demo world's models, observations and example photos: `prom3e-geo demo build`.

Steps (each timed and recorded in `demo.json`):

1. sample training observations from the world (observer density x suitability) and render their
   modalities: a 64 px photo of the species, the 32 px satellite patch at the place, the scaled
   environment vector (with measurement noise), the location;
2. train the photo CNN and the species-name table together (cosine logits over all species, a
   learnable temperature): the image anchor, as BioCLIP is for TaxaBind;
3. stage 1: align the satellite CNN, the environment MLP and the head on the real GeoCLIP
   location encoder to the frozen photo embeddings (`prom3e_geo.train.stage1`, label-aware
   InfoNCE);
4. stage 2: train a small ProM3E on the all-paired embeddings (image, sat, loc, env, text) with
   the toolkit's own trainer (`prom3e_geo.train.stage2`);
5. write `encoders.safetensors`, `prom3e.safetensors`, `demo.json`, an iNaturalist-style
   observations CSV and held-out query photos.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_serializer, field_validator

from prom3e_geo import __version__
from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.clip import patches_to_pixels
from prom3e_geo.encoders.location import LocationEncoder
from prom3e_geo.engine.cells import CellContext
from prom3e_geo.errors import InputError
from prom3e_geo.model.checkpoint import load_prom3e
from prom3e_geo.model.prom3e import ProM3E, ProM3EConfig
from prom3e_geo.plugins.demo.models import (
    DIM,
    DemoNetworks,
    demo_encoders,
    save_networks,
    uint8_photos_to_pixels,
)
from prom3e_geo.plugins.demo.render import satellite_patches, species_photos
from prom3e_geo.plugins.demo.world import DemoWorld, sample_observations
from prom3e_geo.recipes import (
    LossSettings,
    OptimSettings,
    RecipeModel,
    TrainRecipe,
    TrainSettings,
    parse_recipe,
    read_yaml,
)
from prom3e_geo.train.data import PairedEmbeddings
from prom3e_geo.train.stage1 import MAX_LOGIT_SCALE, align_to_anchor, fit_batches, info_nce
from prom3e_geo.train.stage2 import Metrics, Stage2Trainer

PHOTO_RENDER_PX = 64
RENDER_CHUNK = 1000  # photos and patches rendered per call (bounded memory)
QUERY_PHOTO_PX = 128
QUERY_SPECIES = (
    "northern cardinal",
    "bighorn sheep",
    "giant sequoia",
    "wood thrush",
    "American alligator",
    "cactus wren",
    "greater roadrunner",
    "American bison",
    "California poppy",
    "bald cypress",
    "saguaro",
    "American black bear",
)


class DemoRecipe(RecipeModel):
    """Sizes and schedules of a demo build (recipes/demo-world.yaml holds the shipped one)."""

    seed: int = Field(0, description="Seed of the world, the sampling and the training.")
    train_observations: int = Field(
        24_000, gt=0, description="Paired (photo, patch, location, environment, name) samples."
    )
    csv_observations: int = Field(30_000, gt=0, description="Rows of the example observations CSV.")
    photo_epochs: int = Field(12, gt=0, description="Epochs of the photo CNN + species names.")
    align_epochs: int = Field(
        12, gt=0, description="Stage 1: epochs of sat, env and loc aligned to the photo anchor."
    )
    batch_size: int = Field(256, gt=0, description="Batch size of the photo anchor and stage 1.")
    lr: float = Field(2e-3, gt=0, description="Learning rate of the photo anchor and stage 1.")
    prom3e: ProM3EConfig = Field(
        default_factory=lambda: ProM3EConfig(embed_dim=128, heads=4, mlp_dim=256),
        description="The demo ProM3E's architecture (the training recipe's model keys; "
        "input_dim stays 512, the demo towers' width).",
    )
    stage2_epochs: int = Field(30, gt=0, description="Stage 2: epochs of ProM3E training.")
    stage2_batch: int = Field(512, gt=0, description="Stage 2: batch size.")
    stage2_lr: float = Field(1e-3, gt=0, description="Stage 2: learning rate.")
    stage2_masking: str = Field("uniform", description="Stage 2: masking strategy.")
    stage2_lambda_kl: float = Field(0.02, ge=0, description="Stage 2: weight of the VIB term.")

    @field_validator("prom3e")
    @classmethod
    def _towers_width(cls, value: ProM3EConfig) -> ProM3EConfig:
        if value.input_dim != DIM:
            raise ValueError(f"input_dim must be {DIM}, the demo towers' width")
        return value

    @field_serializer("prom3e")
    def _keys_given(self, value: ProM3EConfig) -> dict[str, int | float]:
        """The architecture keys the recipe sets (what `demo.json` records)."""
        return value.model_dump(exclude_unset=True)

    @classmethod
    def load(cls, path: str | Path) -> DemoRecipe:
        return parse_recipe(cls, read_yaml(path), str(path))


def _log(progress: Callable[[str], None] | None, message: str) -> None:
    if progress:
        progress(message)


def build_demo(
    recipe: DemoRecipe,
    out: str | Path,
    examples: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole build into `out` (and photos + observations into `examples`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    world = DemoWorld(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    sample = render_observations(world, recipe.train_observations, rng)
    timings["sample_and_render_s"] = time.perf_counter() - t0
    _log(
        progress,
        f"sampled and rendered {len(sample.labels):,} observations in {timings['sample_and_render_s']:.0f} s",
    )
    photos, patches, env, labels = sample.photos, sample.patches, sample.env, sample.labels

    nets = DemoNetworks(len(world.species))
    t = time.perf_counter()
    photo_history = train_photo_anchor(nets, photos, labels, recipe, progress)
    timings["photo_anchor_s"] = time.perf_counter() - t
    with torch.no_grad():
        anchors = F.normalize(nets.photo.eval()(photos), dim=-1)

    geoclip = LocationEncoder.load()
    loc_features = F.normalize(
        geoclip.embed(np.c_[sample.lat, sample.lon], batch_size=4096), dim=-1
    )
    histories = {}
    for name, module, inputs in (
        ("sat", nets.sat, patches),
        ("env", nets.env, env),
        ("loc", nets.loc_head, loc_features),
    ):
        t = time.perf_counter()
        histories[name] = align_to_anchor(
            module,
            inputs,
            anchors,
            labels,
            epochs=recipe.align_epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=recipe.seed,
        )
        timings[f"align_{name}_s"] = time.perf_counter() - t
        _log(
            progress,
            f"stage 1: {name} aligned to the photo anchor, loss {histories[name][0]:.3f} -> {histories[name][-1]:.3f}",
        )

    species_names = [(sp.name, sp.common) for sp in world.species]
    data = paired_embeddings(nets, sample, anchors, loc_features)
    t = time.perf_counter()
    prom3e, history = train_prom3e(data, recipe)
    timings["stage2_s"] = time.perf_counter() - t
    _log(
        progress, f"stage 2: ProM3E trained, validation recall@1 {history[-1]['val_recall@1']:.3f}"
    )

    save_networks(nets, species_names, out / "encoders.safetensors")
    from prom3e_geo.model.checkpoint import SYNTHETIC_KEY, save_prom3e

    prom3e.half()
    save_prom3e(
        prom3e, out / "prom3e.safetensors", {"demo_seed": str(recipe.seed), SYNTHETIC_KEY: "true"}
    )
    timings["total_s"] = time.perf_counter() - t0
    info = {
        "software": f"prom3e-geo {__version__}",
        "recipe": recipe.model_dump(mode="json"),
        "species": [{"scientific": s, "common": c} for s, c in species_names],
        "training": {
            "observations": int(len(labels)),
            "photo_anchor_loss": [round(v, 4) for v in photo_history],
            "stage1_loss": {k: [round(v, 4) for v in h] for k, h in histories.items()},
            "stage2_last_epoch": {k: round(float(v), 4) for k, v in history[-1].items()},
        },
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (out / "demo.json").write_text(json.dumps(info, indent=1))
    if examples is not None:
        write_examples(world, Path(examples), recipe)
    _log(progress, f"done in {timings['total_s']:.0f} s")
    return info


@dataclass
class RenderedObservations:
    """Training observations with their rendered modalities (model-ready tensors)."""

    lon: np.ndarray
    lat: np.ndarray
    labels: torch.Tensor  # species index
    photos: torch.Tensor  # normalised [N, 3, 32, 32]
    patches: torch.Tensor  # normalised [N, 3, 32, 32]
    env: torch.Tensor  # scaled environment with measurement noise [N, 4]


def render_observations(world: DemoWorld, n: int, rng: np.random.Generator) -> RenderedObservations:
    """Sample n observations (observer density x suitability) and render their modalities, in
    chunks so that memory stays bounded."""
    lon, lat, species = sample_observations(world, n, rng)
    photos, patches = [], []
    for i in range(0, species.size, RENDER_CHUNK):
        part = slice(i, i + RENDER_CHUNK)
        photos.append(
            uint8_photos_to_pixels(
                torch.from_numpy(species_photos(world, species[part], rng, PHOTO_RENDER_PX))
            )
        )
        patches.append(
            patches_to_pixels(torch.from_numpy(satellite_patches(world, lon[part], lat[part])), 32)
        )
    env = world.env_vector(world.fields(lon, lat))
    env = env + 0.05 * rng.standard_normal(env.shape).astype(np.float32)
    return RenderedObservations(
        lon,
        lat,
        torch.from_numpy(species),
        torch.cat(photos),
        torch.cat(patches),
        torch.from_numpy(env),
    )


@torch.no_grad()
def paired_embeddings(
    nets: DemoNetworks,
    sample: RenderedObservations,
    anchors: torch.Tensor,
    loc_features: torch.Tensor,
) -> PairedEmbeddings:
    """The all-paired (image, sat, loc, env, text) embeddings stage 2 trains on; `anchors` are
    the photo embeddings stage 1 aligned to."""
    nets.eval()
    paired = {
        0: anchors,
        1: nets.sat(sample.patches),
        2: nets.loc_head(loc_features),
        3: nets.env(sample.env),
        4: nets.text(sample.labels),
    }
    values = np.zeros((len(sample.labels), 6, DIM), dtype=np.float32)
    for i, embedding in paired.items():
        values[:, i] = F.normalize(embedding, dim=-1).numpy()
    return PairedEmbeddings(values, list(paired), "demo-world")


def stage2_recipe(recipe: DemoRecipe) -> TrainRecipe:
    """The stage-2 training recipe a demo recipe stands for."""
    return TrainRecipe(
        model=recipe.prom3e,
        loss=LossSettings(lambda_kl=recipe.stage2_lambda_kl),
        masking={"strategy": recipe.stage2_masking},
        optim=OptimSettings(lr=recipe.stage2_lr, t0_epochs=recipe.stage2_epochs),
        train=TrainSettings(
            epochs=recipe.stage2_epochs,
            batch_size=recipe.stage2_batch,
            val_fraction=0.1,
            val_batch=1000,
            seed=recipe.seed,
            amp="none",
        ),
    )


def train_prom3e(data: PairedEmbeddings, recipe: DemoRecipe) -> tuple[ProM3E, list[Metrics]]:
    """Stage 2: the demo ProM3E trained by the toolkit's trainer with the recipe's settings."""
    stage2 = stage2_recipe(recipe)
    with tempfile.TemporaryDirectory() as run:
        history = Stage2Trainer(stage2, [data], Path(run) / "stage2", device="cpu").fit()
        return load_prom3e(Path(run) / "stage2" / "best.safetensors").model, history


def train_photo_anchor(
    nets: DemoNetworks,
    photos: torch.Tensor,
    labels: torch.Tensor,
    recipe: DemoRecipe,
    progress: Callable[[str], None] | None,
) -> list[float]:
    """Photo CNN + species-name table: cosine logits over all species with a learnable scale,
    plus the label-aware InfoNCE of stage 1 (photo -> name direction over every name), trained
    by the stage-1 loop (`fit_batches`)."""
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    all_names = torch.arange(nets.text.num_embeddings)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        image = F.normalize(nets.photo(photos[idx]), dim=-1)
        names = F.normalize(nets.text(all_names), dim=-1)
        logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * image @ names.T
        loss = F.cross_entropy(logits, labels[idx])
        # keep the names spread: the symmetric term over the names present in the batch
        return loss + 0.5 * info_nce(image, names[labels[idx]], logit_scale, labels[idx])

    def on_epoch(epoch: int, loss: float) -> None:
        _log(progress, f"photo anchor epoch {epoch + 1}/{recipe.photo_epochs}: loss {loss:.3f}")

    nets.photo.train()
    history = fit_batches(
        [*nets.photo.parameters(), *nets.text.parameters(), logit_scale],
        batch_loss,
        photos.shape[0],
        epochs=recipe.photo_epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=1e-4,
        seed=recipe.seed + 7,
        on_epoch=on_epoch,
    )
    nets.photo.eval()
    return history


def write_examples(world: DemoWorld, folder: Path, recipe: DemoRecipe) -> None:
    """Held-out query photos (a different random stream from training) and the observations CSV."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(recipe.seed + 1_000_003)
    commons = [sp.common for sp in world.species]
    for common in QUERY_SPECIES:
        photo = species_photos(world, np.array([commons.index(common)]), rng, QUERY_PHOTO_PX)[0]
        name = common.split()[-1] if common != "American black bear" else "black_bear"
        Image.fromarray(photo).save(folder / f"{name.lower().replace(' ', '_')}.jpg", quality=95)
    lon, lat, species = sample_observations(world, recipe.csv_observations, rng)
    dates = np.datetime64("2021-01-01") + rng.integers(0, 3 * 365, species.size)
    import pandas as pd

    pd.DataFrame(
        {
            "id": np.arange(1, species.size + 1),
            "observed_on": dates.astype(str),
            "latitude": lat.round(5),
            "longitude": lon.round(5),
            "scientific_name": [world.species[i].name for i in species],
            "common_name": [world.species[i].common for i in species],
            "quality_grade": np.where(rng.random(species.size) < 0.85, "research", "needs_id"),
            "synthetic": np.full(species.size, "true"),  # outputs made from it say so
        }
    ).to_csv(folder / "observations.csv", index=False)


# -- loading the shipped demo ---------------------------------------------------------------------
def demo_dir() -> Path:
    """The demo models in use: `$PROM3E_GEO_DEMO` if set, else the ones shipped in the package."""
    import os
    from importlib import resources

    override = os.environ.get("PROM3E_GEO_DEMO")
    return (
        Path(override)
        if override
        else Path(str(resources.files("prom3e_geo.plugins.demo").joinpath("data")))
    )


@dataclass
class DemoModels:
    """The shipped (or a freshly built) demo: world, encoders, ProM3E and build record."""

    world: DemoWorld
    encoders: dict[str, Encoder]
    prom3e: ProM3E
    info: dict[str, Any]
    folder: Path

    def context(self) -> CellContext:
        """A `CellContext` over the demo world: demo patches, real coordinates, world fields."""
        from prom3e_geo.engine.cells import CellContext
        from prom3e_geo.plugins.demo.source import DemoSource

        world = self.world
        return CellContext(
            self.encoders,
            DemoSource(seed=world.seed),
            lambda lon, lat: world.env_vector(world.fields(lon, lat)),
        )


def load_demo(folder: str | Path | None = None, device: str = "cpu") -> DemoModels:
    from prom3e_geo.plugins.demo.models import load_networks

    folder = Path(folder) if folder else demo_dir()
    needed = [folder / n for n in ("encoders.safetensors", "prom3e.safetensors", "demo.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise InputError(
            f"demo models missing in {folder}: {', '.join(missing)} (run `prom3e-geo demo build`)"
        )
    info = json.loads((folder / "demo.json").read_text())
    nets, species = load_networks(folder / "encoders.safetensors")
    prom3e = load_prom3e(folder / "prom3e.safetensors").model.float().to(device)
    return DemoModels(
        DemoWorld(info["recipe"]["seed"]),
        demo_encoders(nets, species, device),
        prom3e,
        info,
        folder,
    )


def describe_demo(folder: str | Path | None = None) -> str:
    """A plain-text account of the demo world and its build record."""
    from prom3e_geo.plugins.demo.world import ENV_FEATURES, LANDCOVER, RANGE_THRESHOLD, RANGES

    folder = Path(folder) if folder else demo_dir()
    path = folder / "demo.json"
    if not path.is_file():
        raise InputError(f"no demo build in {folder} (run `prom3e-geo demo build`)")
    info = json.loads(path.read_text())
    r, tr = info["recipe"], info["training"]
    s2 = tr["stage2_last_epoch"]
    lines = [
        f"prom3e-geo demo world (seed {r['seed']}), built by {info['software']}",
        "Real: the contiguous-US geography (US Census boundary, true coordinates) and the GeoCLIP",
        "location encoder weights. Synthetic: environment, land cover, species ranges, observers,",
        "satellite patches, species photos, observations.",
        f"Environment: {', '.join(ENV_FEATURES)}; mountain ranges: {', '.join(RANGES)}.",
        f"Land cover: {', '.join(LANDCOVER)}.",
        f"Species ({len(info['species'])}, range = suitability >= {RANGE_THRESHOLD}): "
        + ", ".join(s["common"] for s in info["species"])
        + ".",
        f"Training: {tr['observations']:,} paired observations; photo anchor {r['photo_epochs']} epochs "
        f"(loss {tr['photo_anchor_loss'][0]} -> {tr['photo_anchor_loss'][-1]}); stage 1 alignment "
        f"{r['align_epochs']} epochs each for sat, env, loc (GeoCLIP + head); stage 2 ProM3E "
        f"{r['prom3e']} for {r['stage2_epochs']} epochs (validation recall@1 {s2.get('val_recall@1')}).",
        "Build time: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in info["timings_s"].items())
        + ".",
    ]
    return "\n".join(lines)
