"""The demo world itself: plausible fields, real-looking ranges, rendering, observer bias, and a
test-size build through the real pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from prom3e_geo.plugins.demo.render import satellite_patches, species_photos
from prom3e_geo.plugins.demo.world import LANDCOVER, RANGE_THRESHOLD, DemoWorld, sample_observations

PLACES = {  # lon, lat
    "Miami": (-80.2, 25.8),
    "Minneapolis": (-93.3, 45.0),
    "Rockies (Colorado)": (-106.5, 39.5),
    "Kansas": (-98.0, 38.5),
    "Phoenix": (-112.1, 33.5),
    "Atlanta": (-84.4, 33.7),
    "Seattle coast": (-123.5, 47.5),
    "Nevada": (-116.5, 39.5),
}


@pytest.fixture(scope="module")
def world():
    return DemoWorld(0)


def _at(world, place):
    lon, lat = PLACES[place]
    return {k: float(v[0]) for k, v in world.fields(np.array([lon]), np.array([lat])).items()}


def test_fields_are_plausible_for_the_usa(world):
    assert _at(world, "Miami")["temperature"] > _at(world, "Minneapolis")["temperature"] + 12
    assert _at(world, "Rockies (Colorado)")["elevation"] > _at(world, "Kansas")["elevation"] + 1.0
    assert _at(world, "Rockies (Colorado)")["temperature"] < _at(world, "Kansas")["temperature"]
    assert (
        _at(world, "Phoenix")["precipitation"] < 300 < 1000 < _at(world, "Atlanta")["precipitation"]
    )
    assert _at(world, "Seattle coast")["precipitation"] > 1500
    assert _at(world, "Nevada")["precipitation"] < _at(world, "Seattle coast")["precipitation"] / 3
    assert _at(world, "Minneapolis")["seasonality"] > _at(world, "Miami")["seasonality"] + 10


def test_landcover_and_determinism(world):
    lon, lat = np.array([p[0] for p in PLACES.values()]), np.array([p[1] for p in PLACES.values()])
    cover = [LANDCOVER[i] for i in world.landcover(lon, lat)]
    assert cover[list(PLACES).index("Phoenix")] in ("desert", "shrubland", "urban")
    assert cover[list(PLACES).index("Rockies (Colorado)")] == "alpine"
    again = DemoWorld(0).fields(lon, lat)
    for k, v in world.fields(lon, lat).items():
        np.testing.assert_array_equal(v, again[k])
    other = DemoWorld(1).fields(lon, lat)["temperature"]
    assert not np.array_equal(other, again["temperature"])  # the seed changes the texture


@pytest.mark.parametrize(
    ("common", "inside", "outside"),
    [
        ("northern cardinal", "Atlanta", "Phoenix"),
        ("saguaro", "Phoenix", "Atlanta"),
        ("American alligator", "Miami", "Minneapolis"),
        ("bighorn sheep", "Rockies (Colorado)", "Miami"),
    ],
)
def test_species_ranges_fall_where_the_real_ones_do(world, common, inside, outside):
    j = [s.common for s in world.species].index(common)
    pts = np.array([PLACES[inside], PLACES[outside]])
    suit = world.suitability(pts[:, 0], pts[:, 1])[:, j]
    assert suit[0] >= RANGE_THRESHOLD > suit[1]


def test_the_world_has_the_supplement_species_and_thirty_in_all(world):
    names = {s.common for s in world.species}
    assert len(world.species) >= 30
    assert {
        "northern cardinal",
        "bighorn sheep",
        "giant sequoia",
        "wood thrush",
        "European herring gull",
        "American alligator",
        "cactus wren",
        "greater roadrunner",
        "white-crowned sparrow",
        "American black bear",
        "American bison",
        "California poppy",
        "bald cypress",
        "saguaro",
    } <= names


def test_observations_follow_observers_and_ranges(world):
    lon, lat, species = sample_observations(world, 4000, np.random.default_rng(0))
    near_city = np.hypot(lon - (-74.0), lat - 40.7) < 1.0  # around New York
    far = np.hypot(lon - (-100.0), lat - 44.0) < 1.0  # rural South Dakota, same area
    assert near_city.sum() > 5 * max(far.sum(), 1)
    suit = world.suitability(lon, lat)[np.arange(species.size), species]
    assert np.median(suit) > 0.5  # a species is observed where it lives


def test_rendering_shapes_determinism_and_clouds(world):
    lon, lat = np.array([-85.0, -112.0]), np.array([36.0, 33.0])
    a = satellite_patches(world, lon, lat, 16)
    b = satellite_patches(world, lon, lat, 16)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a[1].mean() > a[0].mean()  # desert brighter than forest
    cloudy = satellite_patches(world, lon, lat, 16, cloud_probability=1.0)
    assert cloudy.mean() > a.mean()
    # a patch depends on its own centre only, not on the other points of the call
    more = satellite_patches(world, np.r_[-100.0, lon], np.r_[40.0, lat], 16)
    np.testing.assert_array_equal(more[1:], a)
    assert not np.array_equal(a[0], satellite_patches(world, lon + 0.01, lat, 16)[0])
    photos = species_photos(world, np.array([0, 0, 5]), np.random.default_rng(0), 24)
    assert photos.shape == (3, 24, 24, 3) and photos.dtype == np.uint8
    assert not np.array_equal(photos[0], photos[1])  # per-photo variation


def test_the_demo_recipe_reaches_the_stage2_trainer():
    from prom3e_geo.plugins.demo.build import DemoRecipe, stage2_recipe

    r = stage2_recipe(DemoRecipe(stage2_masking="miam", stage2_lambda_kl=0.5, stage2_epochs=7))
    assert r.masking == {"strategy": "miam"} and r.loss.lambda_kl == 0.5
    assert r.train.epochs == 7 and r.optim.t0_epochs == 7 and r.model.embed_dim == 128


@pytest.mark.slow
def test_test_size_build_runs_the_whole_pipeline(tmp_path):
    from prom3e_geo.plugins.demo.build import DemoRecipe, build_demo, load_demo

    recipe = DemoRecipe(
        train_observations=1500,
        csv_observations=500,
        photo_epochs=2,
        align_epochs=1,
        stage2_epochs=2,
        stage2_batch=256,
    )
    info = build_demo(recipe, tmp_path / "demo", tmp_path / "examples")
    assert info["training"]["observations"] == 1500
    demo = load_demo(tmp_path / "demo")
    assert set(demo.encoders) == {"image", "sat", "env", "loc", "text"}
    assert (tmp_path / "examples" / "cardinal.jpg").exists()
    assert len((tmp_path / "examples" / "observations.csv").read_text().splitlines()) == 501


def test_a_demo_recipe_that_is_not_yaml_exits_2(tmp_path, run_cli):
    """Regression: a YAML error in a demo recipe was an internal error (exit 1)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2\n")
    r = run_cli("demo", "build", "--recipe", bad, "--out", tmp_path / "models")
    assert r.code == 2 and "is not valid YAML" in r.err and "\n" not in r.err.strip()
    bad.write_text("- seed\n- 1\n")
    r = run_cli("demo", "build", "--recipe", bad, "--out", tmp_path / "models")
    assert r.code == 2 and "must be a YAML mapping" in r.err
    assert not (tmp_path / "models").exists()
