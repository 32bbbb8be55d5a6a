"""Synthetic imagery of the demo world: Sentinel-2-like patches and species photos.

* **Patches**: surface reflectance (float, like Sentinel-2 L2A B04/B03/B02 / 10000) whose colour
  depends on the land cover of each pixel's location, with class-specific texture (field stripes
  on cropland, canopy speckle in forest, dunes in desert, a street grid in cities), sensor noise
  and, now and then, a cloud. A patch is a deterministic function of its centre and the seed.
* **Photos**: uint8 RGB images of a species: a body of the species' colours and shape (by kind:
  bird, mammal, reptile, tree, flower, cactus, insect) on a habitat background, with per-photo
  variation in position, size, orientation, lighting and noise.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from prom3e_geo.plugins.demo.world import LANDCOVER, DemoWorld, Species

# Mean surface reflectance (R, G, B) per land-cover class.
REFLECTANCE = {
    "forest": (0.030, 0.055, 0.030),
    "grassland": (0.080, 0.100, 0.055),
    "cropland": (0.070, 0.105, 0.050),
    "shrubland": (0.140, 0.130, 0.095),
    "desert": (0.260, 0.215, 0.160),
    "wetland": (0.035, 0.060, 0.050),
    "alpine": (0.180, 0.185, 0.190),
    "urban": (0.150, 0.145, 0.140),
}
KINDS = ("bird", "mammal", "reptile", "tree", "flower", "cactus", "insect")
PATCH_METRES = 2560  # a 256-px Sentinel-2 patch at 10 m
COVER_SAMPLES = 4  # land cover is evaluated on this many x this many points per patch
SURFACE_BLOCK = 128  # patches textured per vectorised step


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


class CellDraws:
    """Random numbers keyed by place: draw k of stream s for point i is a hash of (the point's
    rounded coordinates, the seed, s, k). A patch therefore never depends on which other points
    share its call, and a whole batch is drawn in a few vectorised operations."""

    def __init__(self, seed: int, lon: np.ndarray, lat: np.ndarray) -> None:
        q_lon = np.round(lon * 1e5).astype(np.int64).view(np.uint64)
        q_lat = np.round(lat * 1e5).astype(np.int64).view(np.uint64)
        self.keys = _mix(_mix(q_lon ^ np.uint64(_seed("cells", seed))) ^ q_lat)

    def uniform(self, stream: int, shape: tuple[int, ...] = ()) -> np.ndarray:
        """[n, *shape] float32 uniform in [0, 1)."""
        count = int(np.prod(shape, dtype=np.int64))
        base = _mix(self.keys ^ np.uint64(_seed("stream", stream)))
        steps = np.arange(count, dtype=np.uint64) * np.uint64(_GOLDEN)
        bits = _mix(base[:, None] + steps[None, :]) >> np.uint64(40)  # 24 bits
        return (bits.astype(np.float32) * np.float32(2.0**-24)).reshape(len(self.keys), *shape)

    def normal(self, stream: int, shape: tuple[int, ...] = ()) -> np.ndarray:
        """[n, *shape] float32 standard normal (Box-Muller on two streams)."""
        u = 1.0 - self.uniform(stream, shape)  # (0, 1]
        v = self.uniform(stream + 1, shape)
        return np.sqrt(-2.0 * np.log(u)) * np.cos(np.float32(2 * np.pi) * v)


def satellite_patches(
    world: DemoWorld,
    lon: np.ndarray,
    lat: np.ndarray,
    size: int = 32,
    cloud_probability: float = 0.08,
) -> np.ndarray:
    """[N, size, size, 3] float32 reflectance patches centred on the points, each a function of
    its own centre and the seed only (`CellDraws`)."""
    lon, lat = np.ravel(lon).astype(float), np.ravel(lat).astype(float)
    n = lon.size
    # land cover on a 4 x 4 sub-grid across a 2.56 km footprint (exaggerated 4x so that edges
    # show), upsampled to the patch: the world's fields are smooth at that scale
    span = 4 * PATCH_METRES / 111_000
    offsets = (np.arange(COVER_SAMPLES) + 0.5) / COVER_SAMPLES - 0.5
    dy, dx = np.meshgrid(-offsets * span, offsets * span, indexing="ij")
    plon = lon[:, None, None] + dx / np.cos(np.radians(lat))[:, None, None]
    plat = lat[:, None, None] + dy
    coarse = world.landcover(plon.ravel(), plat.ravel()).reshape(n, COVER_SAMPLES, COVER_SAMPLES)
    pick = np.arange(size) * COVER_SAMPLES // size
    cover = coarse[:, pick][:, :, pick]
    out = np.empty((n, size, size, 3), dtype=np.float32)
    for i in range(0, n, SURFACE_BLOCK):  # blocks small enough for the temporaries to stay cached
        part = slice(i, i + SURFACE_BLOCK)
        draws = CellDraws(world.seed, lon[part], lat[part])
        out[part] = _surface(cover[part], draws, size, cloud_probability)
    return out


def _surface(
    cover: np.ndarray, draws: CellDraws, size: int, cloud_probability: float
) -> np.ndarray:
    """Reflectance from land cover: class colours, class textures, sensor noise, clouds."""
    n = cover.shape[0]
    table = np.array([REFLECTANCE[c] for c in LANDCOVER], dtype=np.float32)
    out = table[cover]
    yy, xx = (np.mgrid[0:size, 0:size] / size).astype(np.float32)
    angle = np.pi * draws.uniform(1, (1, 1))
    stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 6 * (np.cos(angle) * xx + np.sin(angle) * yy)))
    speckle = draws.uniform(2, (size, size))
    grid = ((np.floor(xx * 8) + np.floor(yy * 8)) % 2)[None]
    dunes = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (xx + 0.3 * yy) + 6 * draws.uniform(3, (1, 1)))
    texture = np.ones((n, size, size), dtype=np.float32)
    texture = np.where(cover == LANDCOVER.index("cropland"), 0.75 + 0.5 * stripes, texture)
    texture = np.where(cover == LANDCOVER.index("forest"), 0.7 + 0.6 * speckle, texture)
    texture = np.where(cover == LANDCOVER.index("urban"), 0.7 + 0.6 * grid, texture)
    texture = np.where(cover == LANDCOVER.index("desert"), 0.85 + 0.3 * dunes, texture)
    texture = np.where(cover == LANDCOVER.index("shrubland"), 0.8 + 0.4 * (speckle > 0.8), texture)
    out = out * texture[..., None]
    out = out * (1 + 0.05 * draws.normal(4, (1, 1, 3))) + 0.014 * (
        draws.uniform(6, out.shape[1:]) - 0.5
    )
    cloudy = draws.uniform(8) < cloud_probability
    if cloudy.any():
        cx, cy = draws.uniform(9, (1, 1))[cloudy], draws.uniform(10, (1, 1))[cloudy]
        radius = 0.2 + 0.4 * draws.uniform(11, (1, 1))[cloudy]
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2) * 2)[..., None]
        out[cloudy] = out[cloudy] * (1 - blob) + 0.45 * blob
    clipped: np.ndarray = np.clip(out, 0, 1, out=out)
    return clipped


def _species_style(species: Species, index: int) -> dict[str, Any]:
    rng = np.random.default_rng(_seed("style", species.name))
    return {
        "body": rng.uniform(0.05, 0.95, 3),
        "accent": rng.uniform(0.05, 0.95, 3),
        "kind": KINDS.index(species.kind),
        "aspect": rng.uniform(0.5, 1.6),
        "band": rng.uniform(0.2, 0.8),
        "index": index,
    }


def species_photos(
    world: DemoWorld, species_index: np.ndarray, rng: np.random.Generator, size: int = 32
) -> np.ndarray:
    """[N, size, size, 3] uint8 photos of the given species (indices into world.species)."""
    species_index = np.ravel(species_index)
    n = species_index.size
    styles = [_species_style(sp, i) for i, sp in enumerate(world.species)]
    body = np.array([styles[i]["body"] for i in species_index])
    accent = np.array([styles[i]["accent"] for i in species_index])
    kind = np.array([styles[i]["kind"] for i in species_index])
    aspect = np.array([styles[i]["aspect"] for i in species_index])
    band = np.array([styles[i]["band"] for i in species_index])

    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    cx, cy = rng.uniform(-0.12, 0.12, (2, n, 1, 1))
    scale = rng.uniform(0.75, 1.2, (n, 1, 1))
    theta = rng.uniform(-0.5, 0.5, (n, 1, 1)) + np.pi * (rng.random((n, 1, 1)) < 0.5)
    u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / scale
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / scale
    a = aspect[:, None, None]
    k = kind[:, None, None]
    r = np.hypot(u, v)
    shapes = np.stack(
        [
            (u / (0.32 * a)) ** 2 + (v / 0.2) ** 2 < 1,  # bird: ellipse
            (np.abs(u) < 0.3 * a) & (np.abs(v) < 0.15),  # mammal: box
            (np.abs(u) < 0.42) & (np.abs(v) < 0.07 * a),  # reptile: long and flat
            (np.abs(u) < 0.28 * (0.5 - v)) & (v > -0.35) & (v < 0.45),  # tree: triangle
            r < 0.12 + 0.1 * np.cos(6 * np.arctan2(v, u)) ** 2,  # flower: petals
            (np.abs(u) < 0.09)
            | ((np.abs(v + 0.05) < 0.06) & (np.abs(u) < 0.25 * a)),  # cactus: cross
            ((u / 0.12) ** 2 + (v / 0.3) ** 2 < 1)
            | (((np.abs(u) - 0.2) / 0.18) ** 2 + (v / 0.12) ** 2 < 1),  # insect
        ]
    )
    inside = np.take_along_axis(shapes, k[None], axis=0)[0]
    pattern = (np.sin(2 * np.pi * (u * 4 + band[:, None, None])) > 0) & (k != 3)
    colour = np.where(pattern[..., None], accent[:, None, None], body[:, None, None])
    background = rng.uniform(0.2, 0.7, (n, 1, 1, 3)) * np.array([0.8, 1.0, 0.7])
    background = (
        background + 0.08 * np.sin(2 * np.pi * (yy * rng.uniform(1, 3, (n, 1, 1))))[..., None]
    )
    image = np.where(inside[..., None], colour, background)
    image = image * rng.uniform(0.75, 1.25, (n, 1, 1, 1)) + 0.05 * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)
