"""The demo world: a synthetic but plausible ecology over the real contiguous USA.

Everything is a deterministic function of (lon, lat) and a seed, so any cell of any grid can be
evaluated. What is real: the geography (the bundled Census boundary, true coordinates) and, in the
models, the GeoCLIP location encoder. What is synthetic: the environmental fields, land cover,
species ranges, observers, imagery and photos.

* **Environment.** Elevation (km) with mountain ranges where the real ones are (Rockies, Sierra
  Nevada, Cascades, Appalachians, the Great Basin and Colorado Plateau); mean annual temperature
  (deg C) falling with latitude and elevation; precipitation (mm/yr) wet in the east, on the Gulf
  coast and in the Pacific Northwest, dry in the southwest and in rain shadows; seasonality
  (annual temperature range, deg C) growing with latitude and distance from the coasts. A seeded
  field of smooth random waves adds regional texture.
* **Land cover** from those fields: forest, grassland, cropland, shrubland, desert, wetland,
  alpine, urban.
* **Species** (32, named after real North American species): a Gaussian niche in environment
  space, optional land-cover preferences and a longitude window. Suitability is in [0, 1]; the true
  range is suitability >= RANGE_THRESHOLD.
* **Observers**: density around large cities and along the roads between them, which biases the
  sampled observations as real citizen science is biased.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

RANGE_THRESHOLD = 0.3
LANDCOVER = ("forest", "grassland", "cropland", "shrubland", "desert", "wetland", "alpine", "urban")
ENV_FEATURES = ("temperature", "precipitation", "elevation", "seasonality")
# Fixed scaling of the environment vector the demo env encoder sees (roughly z-scores over CONUS).
ENV_CENTER = np.array([12.0, 800.0, 0.8, 24.0])
ENV_SCALE = np.array([6.0, 450.0, 0.8, 6.0])

RANGES = {  # polyline (lon, lat) vertices, height above the base (km), half-width (degrees)
    "rockies": (
        [(-114.5, 49.0), (-110.5, 44.5), (-106.5, 40.0), (-106.0, 35.5), (-105.5, 32.5)],
        1.7,
        1.0,
    ),
    "sierra_nevada": ([(-121.3, 40.3), (-119.0, 37.5), (-118.2, 35.5)], 2.3, 0.6),
    "cascades": ([(-121.5, 49.0), (-121.9, 45.5), (-122.0, 42.5), (-121.6, 41.0)], 1.4, 0.6),
    "appalachians": (
        [(-85.0, 34.3), (-82.0, 36.5), (-79.0, 38.8), (-76.0, 41.3), (-73.0, 44.0), (-70.5, 45.5)],
        0.8,
        1.1,
    ),
    "great_basin": ([(-117.5, 41.0), (-114.5, 39.0)], 0.3, 2.0),
    "colorado_plateau": ([(-111.5, 37.5), (-108.5, 36.5)], 0.6, 1.8),
}
CITIES = [  # lon, lat, weight (metro population, millions)
    (-74.0, 40.7, 20),
    (-118.2, 34.1, 13),
    (-87.6, 41.9, 9.5),
    (-96.8, 32.8, 7.6),
    (-95.4, 29.8, 7.1),
    (-77.0, 38.9, 6.3),
    (-80.2, 25.8, 6.1),
    (-75.2, 40.0, 6.2),
    (-84.4, 33.7, 6.1),
    (-112.1, 33.4, 4.9),
    (-71.1, 42.4, 4.9),
    (-122.4, 37.8, 4.7),
    (-83.0, 42.3, 4.4),
    (-122.3, 47.6, 4.0),
    (-93.3, 45.0, 3.7),
    (-117.2, 32.7, 3.3),
    (-82.5, 27.9, 3.2),
    (-105.0, 39.7, 3.0),
    (-90.2, 38.6, 2.8),
    (-76.6, 39.3, 2.8),
    (-80.8, 35.2, 2.7),
    (-81.4, 28.5, 2.7),
    (-98.5, 29.4, 2.6),
    (-122.7, 45.5, 2.5),
    (-121.5, 38.6, 2.4),
    (-111.9, 40.8, 1.3),
    (-106.6, 35.1, 0.9),
    (-110.9, 32.2, 1.0),
    (-97.5, 35.5, 1.4),
    (-90.1, 30.0, 1.3),
    (-86.8, 36.2, 2.0),
    (-115.1, 36.2, 2.3),
    (-94.6, 39.1, 2.2),
    (-86.2, 39.8, 2.1),
    (-81.7, 41.5, 2.1),
]


@dataclass(frozen=True)
class Species:
    """A species' niche: Gaussian in (temperature, precipitation, elevation, seasonality)."""

    name: str
    common: str
    temperature: tuple[float, float]  # mean, sd (deg C)
    precipitation: tuple[float, float]  # mean, sd (mm/yr)
    elevation: tuple[float, float] | None = None  # mean, sd (km)
    seasonality: tuple[float, float] | None = None
    landcover: dict[str, float] = field(default_factory=dict)  # multipliers for some classes
    lon_range: tuple[float, float] = (-180.0, 180.0)
    kind: str = "bird"  # photo style: bird, mammal, reptile, tree, flower, cactus, insect


SPECIES: tuple[Species, ...] = (
    # the species of the ProM3E supplement's Fig. 4
    Species(
        "Cardinalis cardinalis",
        "northern cardinal",
        (15, 5),
        (1150, 350),
        (0.3, 0.5),
        landcover={"desert": 0.3},
        lon_range=(-104, -66),
    ),
    Species(
        "Ovis canadensis",
        "bighorn sheep",
        (1, 5),
        (700, 500),
        (2.4, 0.7),
        lon_range=(-122, -102),
        kind="mammal",
    ),
    Species(
        "Sequoiadendron giganteum",
        "giant sequoia",
        (3, 2.5),
        (1000, 300),
        (2.5, 0.5),
        lon_range=(-120.8, -118.0),
        kind="tree",
    ),
    Species(
        "Hylocichla mustelina",
        "wood thrush",
        (13, 3.5),
        (1150, 250),
        (0.4, 0.5),
        landcover={"forest": 1.5, "cropland": 0.5},
        lon_range=(-97, -66),
    ),
    Species(
        "Larus argentatus",
        "European herring gull",
        (8, 3.5),
        (950, 250),
        (0.15, 0.25),
        seasonality=(26, 5),
        lon_range=(-93, -66),
    ),
    Species(
        "Alligator mississippiensis",
        "American alligator",
        (21, 3.5),
        (1400, 300),
        (0.05, 0.15),
        landcover={"wetland": 2.0},
        lon_range=(-100, -75),
        kind="reptile",
    ),
    Species(
        "Campylorhynchus brunneicapillus",
        "cactus wren",
        (15.5, 2.5),
        (160, 80),
        (0.8, 0.5),
        lon_range=(-119, -97),
    ),
    Species(
        "Geococcyx californianus",
        "greater roadrunner",
        (15, 3),
        (300, 150),
        (1.0, 0.7),
        lon_range=(-122, -93),
    ),
    Species(
        "Zonotrichia leucophrys",
        "white-crowned sparrow",
        (9, 5),
        (600, 400),
        (1.2, 1.0),
        lon_range=(-125, -100),
    ),
    Species(
        "Ursus americanus",
        "American black bear",
        (7, 4),
        (1000, 400),
        (1.2, 0.8),
        landcover={"forest": 1.6, "cropland": 0.3, "urban": 0.2},
        kind="mammal",
    ),
    Species(
        "Bison bison",
        "American bison",
        (9, 4),
        (500, 150),
        (1.0, 0.5),
        landcover={"grassland": 1.8, "forest": 0.4},
        lon_range=(-108, -95),
        kind="mammal",
    ),
    Species(
        "Eschscholzia californica",
        "California poppy",
        (12.5, 2),
        (380, 150),
        (0.5, 0.5),
        seasonality=(15, 3),
        lon_range=(-124.5, -116),
        kind="flower",
    ),
    Species(
        "Taxodium distichum",
        "bald cypress",
        (18, 3),
        (1350, 200),
        (0.05, 0.2),
        landcover={"wetland": 2.0},
        lon_range=(-98, -75),
        kind="tree",
    ),
    Species(
        "Carnegiea gigantea",
        "saguaro",
        (16.5, 1.5),
        (110, 40),
        (0.6, 0.3),
        lon_range=(-114.5, -110.0),
        kind="cactus",
    ),
    # more of the continent
    Species(
        "Quercus alba",
        "white oak",
        (13, 4),
        (1100, 250),
        (0.35, 0.4),
        landcover={"forest": 1.5},
        lon_range=(-97, -68),
        kind="tree",
    ),
    Species(
        "Odocoileus virginianus",
        "white-tailed deer",
        (12, 6),
        (900, 350),
        (0.5, 0.6),
        lon_range=(-106, -66),
        kind="mammal",
    ),
    Species("Turdus migratorius", "American robin", (11, 7), (800, 450), None),
    Species(
        "Haliaeetus leucocephalus",
        "bald eagle",
        (7, 5),
        (900, 400),
        (0.4, 0.6),
        seasonality=(30, 6),
    ),
    Species(
        "Sciurus carolinensis",
        "eastern gray squirrel",
        (13, 4),
        (1050, 250),
        (0.3, 0.5),
        landcover={"urban": 1.5, "forest": 1.3},
        lon_range=(-96, -66),
        kind="mammal",
    ),
    Species(
        "Cyanocitta cristata", "blue jay", (12, 5), (1000, 300), (0.4, 0.5), lon_range=(-102, -66)
    ),
    Species(
        "Aphelocoma californica",
        "California scrub-jay",
        (13, 2.5),
        (450, 200),
        (0.5, 0.5),
        seasonality=(15, 3),
        lon_range=(-124.5, -117),
    ),
    Species(
        "Pinus ponderosa",
        "ponderosa pine",
        (8, 3),
        (550, 200),
        (1.8, 0.6),
        lon_range=(-122, -102),
        kind="tree",
    ),
    Species(
        "Sabal palmetto",
        "cabbage palmetto",
        (21, 1.8),
        (1350, 200),
        (0.05, 0.15),
        lon_range=(-90, -75),
        kind="tree",
    ),
    Species(
        "Larrea tridentata",
        "creosote bush",
        (13.5, 3),
        (180, 80),
        (0.9, 0.5),
        lon_range=(-118, -98),
        kind="flower",
    ),
    Species(
        "Acer saccharum",
        "sugar maple",
        (7, 2.5),
        (950, 200),
        (0.5, 0.4),
        seasonality=(30, 5),
        lon_range=(-96, -66),
        kind="tree",
    ),
    Species(
        "Picea engelmannii",
        "Engelmann spruce",
        (2, 2.5),
        (750, 250),
        (2.8, 0.5),
        lon_range=(-121, -104),
        kind="tree",
    ),
    Species(
        "Danaus plexippus",
        "monarch",
        (14, 6),
        (850, 300),
        (0.5, 0.6),
        landcover={"grassland": 1.3, "cropland": 1.3},
        kind="insect",
    ),
    Species("Canis latrans", "coyote", (11, 7), (500, 350), (1.0, 0.9), kind="mammal"),
    Species("Pandion haliaetus", "osprey", (14, 6), (1100, 350), (0.1, 0.3)),
    Species(
        "Pseudotsuga menziesii",
        "Douglas fir",
        (6, 3),
        (1300, 400),
        (0.9, 0.7),
        lon_range=(-124.5, -104),
        kind="tree",
    ),
    Species(
        "Antilocapra americana",
        "pronghorn",
        (8, 4),
        (330, 120),
        (1.6, 0.5),
        landcover={"grassland": 1.5, "shrubland": 1.3},
        lon_range=(-120, -99),
        kind="mammal",
    ),
    Species(
        "Heloderma suspectum",
        "Gila monster",
        (16, 2),
        (120, 60),
        (0.7, 0.4),
        lon_range=(-115, -108),
        kind="reptile",
    ),
)


def _segment_distance(
    lon: np.ndarray, lat: np.ndarray, vertices: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Distance in degrees (lon scaled by cos lat) from points to a polyline."""
    scale = np.cos(np.radians(np.clip(lat, -80, 80)))
    best = np.full(np.shape(lon), np.inf)
    for (x0, y0), (x1, y1) in zip(vertices[:-1], vertices[1:], strict=True):
        ax, ay = (x1 - x0) * scale, y1 - y0
        px, py = (lon - x0) * scale, lat - y0
        t = np.clip((px * ax + py * ay) / (ax * ax + ay * ay), 0, 1)
        best = np.minimum(best, np.hypot(px - t * ax, py - t * ay))
    return best


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


class DemoWorld:
    """The world for one seed (see the module docstring)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        rng = np.random.default_rng(seed)
        # smooth random waves: wavelengths 3-12 degrees, for regional texture
        angles = rng.uniform(0, np.pi, 32)
        wavenumbers = rng.uniform(1 / 12, 1 / 3, 32)  # wavelengths 3-12 degrees, any orientation
        self._waves = [
            ((k * np.cos(a), k * np.sin(a)), rng.uniform(0, 2 * np.pi))
            for k, a in zip(wavenumbers, angles, strict=True)
        ]
        # fine-scale habitat patches (wavelengths 0.4-1.5 degrees): local moisture and warmth that
        # satellite patches and environment vectors see, but coarse location does not
        angles = rng.uniform(0, np.pi, 48)
        wavenumbers = rng.uniform(1 / 1.5, 1 / 0.4, 48)
        self._fine = [
            ((k * np.cos(a), k * np.sin(a)), rng.uniform(0, 2 * np.pi))
            for k, a in zip(wavenumbers, angles, strict=True)
        ]
        self.species = SPECIES

    def _texture(
        self, lon: np.ndarray, lat: np.ndarray, salt: int, fine: bool = False
    ) -> np.ndarray:
        waves = self._fine if fine else self._waves
        out = np.zeros(np.shape(lon))
        for i, ((kx, ky), phase) in enumerate(waves):
            out += np.sin(2 * np.pi * (kx * lon + ky * lat) + phase + salt * (i + 1))
        scaled: np.ndarray = out / np.sqrt(len(waves))
        return scaled

    def fields(self, lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
        """Environmental fields at points: temperature (C), precipitation (mm), elevation (km),
        seasonality (C)."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        # plains rising to the west, a high interior plateau, low Pacific valleys and coast
        base = 0.15 + 1.15 * np.clip((-lon - 96) / 10, 0, 1) * np.clip((lat - 27) / 5, 0, 1)
        base = base * _sigmoid((lon + 119.8) / 0.7) + 0.2 * (1 - _sigmoid((lon + 119.8) / 0.7))
        sonoran = np.exp(
            -0.5 * (((lon + 113.0) / 2.5) ** 2 + ((lat - 32.8) / 1.4) ** 2)
        )  # low desert
        base = base * (1 - 0.75 * sonoran)
        ridges = np.max(
            [
                h * np.exp(-0.5 * (_segment_distance(lon, lat, v) / w) ** 2)
                for v, h, w in RANGES.values()
            ],
            axis=0,
        )
        coastal_plain = _sigmoid((lon + 92) / 2) * _sigmoid((33 - lat) / 1.2) + _sigmoid(
            (lon + 78) / 1.5
        ) * _sigmoid((40 - lat) / 2)
        elevation = (base + ridges) * (1 - 0.8 * np.clip(coastal_plain, 0, 1))
        elevation = np.clip(elevation + 0.08 * self._texture(lon, lat, 1), 0.0, None)

        west_coast = np.exp(-np.clip(lon + 124.5, 0, None) / 2.5)
        temperature = (
            26.0 - 0.85 * (lat - 25) - 5.5 * elevation + 2.5 * west_coast * _sigmoid((lat - 38) / 2)
        )
        temperature = (
            temperature
            + 0.5 * self._texture(lon, lat, 2)
            + 1.2 * self._texture(lon, lat, 6, fine=True)
        )

        east = _sigmoid((lon + 97) / 3.0)
        pnw = np.exp(-0.5 * ((lon + 123.3) / 1.6) ** 2) * _sigmoid((lat - 41.5) / 1.2)
        gulf = np.exp(-0.5 * ((lat - 30.0) / 2.0) ** 2) * _sigmoid((lon + 97) / 2)
        shadow = sum(
            (
                np.exp(-0.5 * ((_segment_distance(lon, lat, v) - 1.8 * w) / w) ** 2)
                * (lon > v[0][0] - 2)
                for key, (v, _, w) in RANGES.items()
                if key in ("sierra_nevada", "cascades")
            ),
            np.zeros_like(lon),  # the start `sum` adds to, as its default 0 would
        )
        southwest = np.exp(-0.5 * (((lon + 113.5) / 4.0) ** 2 + ((lat - 34.0) / 3.0) ** 2))
        california = np.exp(-0.5 * ((lon + 121.5) / 2.0) ** 2) * _sigmoid(
            (lat - 34.0) / 1.5
        )  # winter rain
        precipitation = 300 + 900 * east + 1700 * pnw + 450 * gulf + 300 * california
        precipitation = precipitation + 500 * np.clip(elevation - 1.0, 0, None)
        precipitation = precipitation * (1 - 0.4 * np.clip(shadow, 0, 1)) * (1 - 0.45 * southwest)
        precipitation = precipitation * np.exp(0.3 * self._texture(lon, lat, 5, fine=True))
        precipitation = np.clip(precipitation + 60 * self._texture(lon, lat, 3), 80, None)

        # annual range: small on the Pacific coast (westerlies) and in the subtropics, large inland
        pacific = np.clip((lon + 123.5) / 6.0, 0, 1) ** 1.5
        seasonality = 4.0 + 0.6 * (lat - 25) + 16 * pacific * np.clip((lat - 24) / 10, 0.3, 1)
        seasonality = seasonality + 0.5 * self._texture(lon, lat, 4)
        return {
            "temperature": temperature,
            "precipitation": precipitation,
            "elevation": elevation,
            "seasonality": seasonality,
        }

    def observer_density(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Relative observer density: cities (population-weighted) plus roads between them."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        city = np.array(CITIES)
        scale = np.cos(np.radians(lat))[..., None]
        d2 = ((lon[..., None] - city[:, 0]) * scale) ** 2 + (lat[..., None] - city[:, 1]) ** 2
        density = (
            city[:, 2] * (np.exp(-d2 / (2 * 0.35**2)) + 0.15 * np.exp(-d2 / (2 * 1.5**2)))
        ).sum(-1)
        roads = np.zeros(np.shape(lon))
        for (x0, y0, _), (x1, y1, _) in zip(CITIES[:-1], CITIES[1:], strict=True):
            if abs(x1 - x0) + abs(y1 - y0) < 12:
                roads = np.maximum(
                    roads,
                    np.exp(-0.5 * (_segment_distance(lon, lat, [(x0, y0), (x1, y1)]) / 0.12) ** 2),
                )
        total: np.ndarray = density + 0.6 * roads + 0.03
        return total

    def landcover(
        self, lon: np.ndarray, lat: np.ndarray, fields: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Land-cover class index (into LANDCOVER) at points."""
        f = fields or self.fields(lon, lat)
        t, p, e = f["temperature"], f["precipitation"], f["elevation"]
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        cover = np.full(t.shape, LANDCOVER.index("forest"))
        cover[p < 800] = LANDCOVER.index("grassland")
        midwest = (p >= 700) & (p < 1150) & (lon > -100) & (lon < -81) & (lat > 37) & (e < 0.6)
        cover[midwest] = LANDCOVER.index("cropland")
        cover[p < 480] = LANDCOVER.index("shrubland")
        cover[(p < 330) & (t > 10)] = LANDCOVER.index("desert")
        cover[(lat < 32) & (lon > -95) & (e < 0.08) & (p > 1150)] = LANDCOVER.index("wetland")
        cover[(e > 2.4) | (t < 1.0)] = LANDCOVER.index("alpine")
        cover[self.observer_density(lon, lat) > 6.0] = LANDCOVER.index("urban")
        return cover

    def env_vector(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        """[N, 4] scaled environment features for the demo env encoder."""
        raw = np.stack([np.ravel(fields[k]) for k in ENV_FEATURES], axis=1)
        scaled: np.ndarray = ((raw - ENV_CENTER) / ENV_SCALE).astype(np.float32)
        return scaled

    def suitability(
        self,
        lon: np.ndarray,
        lat: np.ndarray,
        fields: dict[str, np.ndarray] | None = None,
        cover: np.ndarray | None = None,
    ) -> np.ndarray:
        """[N, S] habitat suitability in [0, 1] for every species at points (flattened)."""
        lon, lat = np.ravel(np.asarray(lon, dtype=float)), np.ravel(np.asarray(lat, dtype=float))
        f = fields or self.fields(lon, lat)
        f = {k: np.ravel(v) for k, v in f.items()}
        cover = np.ravel(cover) if cover is not None else self.landcover(lon, lat, f)
        out = np.empty((lon.size, len(self.species)))
        for j, sp in enumerate(self.species):
            z = ((f["temperature"] - sp.temperature[0]) / sp.temperature[1]) ** 2
            z += (
                (np.log(f["precipitation"]) - np.log(sp.precipitation[0]))
                / (sp.precipitation[1] / sp.precipitation[0])
            ) ** 2
            if sp.elevation:
                z += ((f["elevation"] - sp.elevation[0]) / sp.elevation[1]) ** 2
            if sp.seasonality:
                z += ((f["seasonality"] - sp.seasonality[0]) / sp.seasonality[1]) ** 2
            s = np.exp(-0.5 * z)
            for name, factor in sp.landcover.items():
                s = np.where(cover == LANDCOVER.index(name), s * factor, s)
            lo, hi = sp.lon_range
            s = s * _sigmoid((lon - lo) / 0.4) * _sigmoid((hi - lon) / 0.4)
            out[:, j] = np.clip(s, 0, 1)
        return out


def sample_observations(
    world: DemoWorld, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, species index) of n observations: places drawn in proportion to observer
    density times total suitability, inside CONUS; the species in proportion to its suitability."""
    import shapely

    from prom3e_geo.grid.aoi import conus_boundary

    conus = conus_boundary()
    minx, miny, maxx, maxy = conus.bounds
    lon_parts, lat_parts, sp_parts = [], [], []
    need = n
    while need > 0:
        m = max(4 * need, 20_000)
        lon = rng.uniform(minx, maxx, m)
        lat = rng.uniform(miny, maxy, m)
        keep = shapely.contains_xy(conus, lon, lat)
        lon, lat = lon[keep], lat[keep]
        suit = world.suitability(lon, lat)
        weight = world.observer_density(lon, lat) * suit.sum(axis=1)
        pick = rng.choice(lon.size, size=min(need, lon.size), p=weight / weight.sum())
        probs = suit[pick] / suit[pick].sum(axis=1, keepdims=True)
        species = (probs.cumsum(axis=1) > rng.random(pick.size)[:, None]).argmax(axis=1)
        lon_parts.append(lon[pick])
        lat_parts.append(lat[pick])
        sp_parts.append(species)
        need -= pick.size
    return np.concatenate(lon_parts), np.concatenate(lat_parts), np.concatenate(sp_parts)
