"""The demo world's registrations: the `demo` model preset, encoder, imagery source (in
`source.py`) and evaluation data. The core finds them through its registries (entry points in
`pyproject.toml`); nothing in the core imports this package."""

from __future__ import annotations

import numpy as np
import torch

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.engine.parts import PipelineParts
from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.measure import EvaluationSet
from prom3e_geo.evaluate.uncertainty import OodCase
from prom3e_geo.hashing import file_sha256
from prom3e_geo.plugins.demo.build import DemoModels, load_demo

CONUS_BOX = (-125.0, 24.4, -66.9, 49.4)  # the demo world: the contiguous USA
COMPANIONS = {"novelty": "novelty.safetensors", "calibration": "calibration.safetensors"}
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
        coverage=CONUS_BOX,
        patch={"size": 32},  # the demo's sat encoder was trained on 32 px rendered patches
        companions={
            kind: str(demo.folder / name)
            for kind, name in COMPANIONS.items()
            if (demo.folder / name).is_file()
        },
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
        demo_ood_cases(demo, lon, lat, rng, max(n // 10, 50)),
    )


OOD_PLACES = {  # lon/lat boxes outside the demo world: (min lon, min lat, max lon, max lat)
    "places at sea": [(-72.0, 30.0, -60.0, 38.0), (-135.0, 30.0, -126.0, 42.0), (-94.0, 24.5, -84.0, 27.5)],
    "places in Alaska": [(-160.0, 60.0, -142.0, 68.0)],
    "places in Europe": [(0.0, 44.0, 20.0, 54.0)],
    "places in South America": [(-68.0, -30.0, -48.0, -5.0)],
    "places in Africa": [(12.0, -10.0, 35.0, 12.0)],
}  # fmt: skip


def demo_ood_cases(
    demo: DemoModels, lon: np.ndarray, lat: np.ndarray, rng: np.random.Generator, n: int
) -> dict[str, OodCase]:
    """Inputs the demo world never produces, each with the visible modalities it is judged
    with: cloud-covered and empty (nodata) patches at real places (sat+loc+env), places outside
    the world (loc+env, with the world's fields extrapolated there), and photos of no species
    (noise, flat grey, a checkerboard; image only)."""
    encoders = demo.encoders
    at = rng.choice(len(lon), n, replace=False)
    x, _ = demo.context().embed(lon[at], lat[at], ("sat", "loc", "env"))
    cases = {}
    for name, patches in (
        ("cloud-covered patches", 0.55 + 0.03 * rng.standard_normal((n, 32, 32, 3))),
        ("empty patches (nodata)", np.zeros((n, 32, 32, 3))),
    ):
        values = x.clone()
        values[:, 1] = encoders["sat"].embed(list(patches.astype(np.float32)))
        cases[name] = OodCase(values, [1, 2, 3])
    for name, boxes in OOD_PLACES.items():
        box = np.array(boxes)[rng.integers(0, len(boxes), n)]
        p_lon, p_lat = rng.uniform(box[:, 0], box[:, 2]), rng.uniform(box[:, 1], box[:, 3])
        values, _ = demo.context().embed(p_lon, p_lat, ("loc", "env"))
        cases[name] = OodCase(values, [2, 3])
    third = n // 3
    checker = (np.indices((64, 64)).sum(0) // 8 % 2 * 255)[..., None].repeat(3, -1)
    photos = np.concatenate(
        [
            rng.integers(0, 256, (third, 64, 64, 3)),
            np.full((third, 64, 64, 3), 128),
            np.broadcast_to(checker, (n - 2 * third, 64, 64, 3)),
        ]
    ).astype(np.uint8)
    values = torch.zeros_like(x)
    values[:, 0] = encoders["image"].embed(list(photos))
    cases["photos of no species"] = OodCase(values, [0])
    return cases
