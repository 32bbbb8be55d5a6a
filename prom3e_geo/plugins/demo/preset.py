"""The demo world's registrations: the `demo` model preset, encoder, imagery source (in
`source.py`) and evaluation data. The core finds them through its registries (entry points in
`pyproject.toml`); nothing in the core imports this package."""

from __future__ import annotations

import numpy as np
import torch

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.engine.pipeline import PipelineParts
from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.report import EvaluationSet
from prom3e_geo.hashing import file_sha256
from prom3e_geo.plugins.demo.build import load_demo

EVAL_SEED = 515151  # the evaluation observations' own random stream


def demo_preset(device: str = "cpu") -> PipelineParts:
    """The shipped demo models: ProM3E, the photo/sat/env/loc/text encoders, the world's
    environment and its rendered Sentinel-2-like patches (source `demo`)."""
    demo = load_demo(device=device)
    world = demo.world
    return PipelineParts(
        model=demo.prom3e,
        weights_sha256=file_sha256(demo.folder / "prom3e.safetensors"),
        encoders=dict(demo.encoders),
        encoder_specs=dict.fromkeys(demo.encoders, "demo"),
        environment=lambda lon, lat: world.env_vector(world.fields(lon, lat)),
        source="demo",
        synthetic=True,
    )


def demo_encoder(modality: str, device: str = "cpu") -> Encoder:
    """The registered encoder `demo`: the demo world's encoder of `modality`."""
    encoders = load_demo(device=device).encoders
    if modality not in encoders:
        raise InputError(f"the demo world has no {modality} encoder (it has {', '.join(encoders)})")
    return encoders[modality]


def demo_evaluation_data(n: int = 2000, seed: int = EVAL_SEED) -> EvaluationSet:
    """New demo-world observations from a random stream of their own (never seen in training):
    photo, patch, location, environment and species-name embeddings, the species as labels, the
    true temperature and elevation as continuous targets and the photos for image grids."""
    from prom3e_geo.plugins.demo.render import species_photos
    from prom3e_geo.plugins.demo.world import sample_observations

    demo = load_demo()
    rng = np.random.default_rng(seed)
    lon, lat, species = sample_observations(demo.world, n, rng)
    x, _ = demo.context().embed(lon, lat, ("sat", "loc", "env"))
    photos = species_photos(demo.world, species, rng, 64)
    x[:, 0] = demo.encoders["image"].embed(list(photos))
    names = [demo.world.species[s].common for s in species]
    x[:, 4] = torch.nn.functional.normalize(demo.encoders["text"].embed(names), dim=-1)
    fields = demo.world.fields(lon, lat)
    return EvaluationSet(
        x.float(),
        [0, 1, 2, 3, 4],
        f"demo world, {n:,} new observations",
        species,
        {"temperature": fields["temperature"], "elevation": fields["elevation"]},
        photos,
    )
