"""Weights from the hub through `huggingface_hub` itself, against the stand-in on 127.0.0.1:
the released layouts load and compute what their own classes compute; only the needed files
are fetched; dropped connections resume, server errors are retried, corrupt files, missing and
gated repositories are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_hub import FakeHub
from hub_repos import REPOS, TOKENIZER_REPO, LocationEncoder, ResidualFCNet, build_repos, tiny_clip
from safetensors.torch import load_file

import prom3e_geo.hub
from prom3e_geo.encoders import build_encoder
from prom3e_geo.errors import WeightsError
from prom3e_geo.hub import HubRef, fetch, parse_hub_ref
from prom3e_geo.model.checkpoint import load_prom3e

CARDINAL = "examples/cardinal.jpg"


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return build_repos(tmp_path_factory.mktemp("repos"))


@pytest.fixture
def hub(repos, tmp_path, monkeypatch):
    """The stand-in serving every repository, with huggingface_hub pointed at it and its cache
    in the test's folder."""
    from huggingface_hub import constants, file_download

    with FakeHub() as fake:
        fake.commits = {
            repo_id: fake.add_repo(repo_id, folder) for repo_id, folder in repos.items()
        }
        template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        # huggingface_hub < 1.0 keeps its own copy of the template
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template, raising=False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setattr(prom3e_geo.hub, "RETRY_WAIT_S", 0.01)
        yield fake


def test_hub_ids_are_told_from_local_paths(tmp_path):
    assert parse_hub_ref("MVRL/ProM3E") == HubRef("MVRL/ProM3E")
    assert parse_hub_ref("hf-hub:MVRL/taxabind-vit-b-16@v1.0") == HubRef(
        "MVRL/taxabind-vit-b-16", "v1.0"
    )
    assert parse_hub_ref("weights/prom3e.ckpt") is None  # a missing local file, not a repository
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    assert parse_hub_ref(str(tmp_path / "org" / "name")) is None
    with pytest.raises(WeightsError, match="not a hub id"):
        parse_hub_ref("hf-hub:not a repo")


def test_released_layouts_load_and_compute_what_their_own_classes_compute(hub, repos):
    model = load_prom3e("MVRL/ProM3E")
    saved = load_file(repos[REPOS["model"]] / "model.safetensors")
    assert set(model.model.state_dict()) == set(saved)
    assert all(torch.equal(model.model.state_dict()[k], v) for k, v in saved.items())
    assert model.origin == f"MVRL/ProM3E@{hub.commits['MVRL/ProM3E']}"
    assert model.model.config.embed_dim == 32 and model.model.config.heads == 2

    latlon = np.array([[38.9, -77.0], [47.6, -122.3], [29.8, -95.4]])
    loc = build_encoder("loc", REPOS["loc"])
    reference = LocationEncoder.from_pretrained(repos[REPOS["loc"]]).eval()
    expected = F.normalize(reference(torch.tensor(latlon, dtype=torch.float32)), dim=-1)
    torch.testing.assert_close(loc.embed(latlon), expected, atol=1e-5, rtol=1e-5)
    assert loc.origin == f"{REPOS['loc']}@{hub.commits[REPOS['loc']]}"

    env = build_encoder("env", REPOS["env"])
    x = torch.randn(4, 20, generator=torch.Generator().manual_seed(0))
    sinr = ResidualFCNet.from_pretrained(repos[REPOS["env"]]).eval()
    torch.testing.assert_close(
        env.embed(x.numpy()), F.normalize(sinr(x), dim=-1), atol=1e-5, rtol=1e-5
    )

    from transformers import CLIPVisionModelWithProjection

    from prom3e_geo.encoders.clip import load_photo, patches_to_pixels, photo_tensor

    sat = build_encoder("sat", REPOS["sat"])
    patches = np.random.default_rng(0).uniform(0, 0.3, (2, 64, 64, 3)).astype(np.float32)
    tower = CLIPVisionModelWithProjection.from_pretrained(repos[REPOS["sat"]]).eval()
    with torch.no_grad():
        want = tower(pixel_values=patches_to_pixels(torch.from_numpy(patches), 224)).image_embeds
    torch.testing.assert_close(sat.embed(patches), F.normalize(want, dim=-1), atol=1e-5, rtol=1e-4)

    clip = tiny_clip()  # the same seeded weights the open_clip release was written from
    image = build_encoder("image", f"hf-hub:{REPOS['image']}")
    with torch.no_grad():
        want = clip.get_image_features(pixel_values=photo_tensor(load_photo(CARDINAL)).unsqueeze(0))
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    torch.testing.assert_close(
        image.embed([CARDINAL]), F.normalize(want, dim=-1), atol=1e-5, rtol=1e-4
    )

    text = build_encoder("text", f"hf-hub:{REPOS['image']}")
    assert text.tokenizer.convert_tokens_to_ids("<|endoftext|>") == 63  # from the tokenizer repo
    ids = torch.tensor([[62, 0, 1, 28, 63] + [63] * 11])  # <start> a b c</w> <end>, padded
    assert torch.equal(text.preprocess(["abc"])["input_ids"], ids)
    with torch.no_grad():
        want = clip.get_text_features(
            input_ids=ids, attention_mask=(torch.arange(16) < 5)[None].long()
        )
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    torch.testing.assert_close(text.embed(["abc"]), F.normalize(want, dim=-1), atol=1e-5, rtol=1e-4)

    got = {
        path.rsplit("/", 1)[-1]
        for method, path, _ in hub.requests
        if method == "GET" and "/resolve/" in path
    }
    assert "README.md" not in got  # the model cards the hub mixin writes are never fetched
    assert any(f"/{TOKENIZER_REPO}/resolve/" in p for _, p, _ in hub.requests)


def test_a_dropped_connection_resumes_where_it_broke(hub, repos):
    size = (repos[REPOS["model"]] / "model.safetensors").stat().st_size
    assert size > 12_000_000  # more than huggingface_hub's 10 MB chunk: some of it is on disk
    hub.drop_after["model.safetensors"] = 11_000_000
    loaded = load_prom3e("MVRL/ProM3E")
    ranges = [r for _, path, r in hub.requests if path.startswith("/cdn/") and r]
    assert ranges and int(ranges[0].removeprefix("bytes=").rstrip("-")) >= 10_000_000
    assert loaded.weights_path.stat().st_size == size and hub.counts["model.safetensors"] == 2


def test_server_errors_are_retried(hub):
    hub.api_500 = 2
    fetched = fetch(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert hub.api_500 == 0 and (fetched.path / "model.safetensors").is_file()


def test_a_file_that_does_not_match_its_etag_is_refused_and_removed(hub):
    hub.corrupt.add("model.safetensors")
    with pytest.raises(WeightsError, match="does not match its ETag") as err:
        fetch(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert "\n" not in str(err.value)
    hub.corrupt.clear()  # the next run fetches it again, whole
    fetched = fetch(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert (fetched.path / "model.safetensors").stat().st_size > 0
    build_encoder("env", REPOS["env"])


def test_missing_and_gated_repositories_are_one_line_errors(hub, repos):
    hub.add_repo("MVRL/private-gated", repos[REPOS["env"]], gated=True)
    with pytest.raises(WeightsError, match="MVRL/nothing-here: no such repository") as err:
        load_prom3e("MVRL/nothing-here")
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match="MVRL/private-gated is gated.*HF_TOKEN") as err:
        build_encoder("env", "MVRL/private-gated")
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match="no revision 'v9'"):
        build_encoder("env", f"{REPOS['env']}@v9")


def test_the_taxabind_recipe_is_read_from_its_configuration_on_the_hub(hub, repos):
    from prom3e_geo.encoders.audio import AudioPreprocessing
    from prom3e_geo.encoders.clip import Preprocessing
    from prom3e_geo.engine.presets import taxabind_recipe

    recipe = taxabind_recipe()
    assert recipe.model == "MVRL/ProM3E"
    assert recipe.encoders == {
        "image": f"hf-hub:{REPOS['image']}", "text": f"hf-hub:{REPOS['image']}",
        "sat": REPOS["sat"], "loc": REPOS["loc"], "env": REPOS["env"], "audio": REPOS["audio"],
    }  # fmt: skip
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert recipe.preprocessing["image"] == Preprocessing(224, 224, mean, std)
    assert recipe.preprocessing["audio"] == AudioPreprocessing(48_000, 10.0, "repeatpad", None)
    assert recipe.origins == {
        "config": f"MVRL/taxabind-config@{hub.commits['MVRL/taxabind-config']}"
    }
    assert set(recipe.hub_parts()) == {"model", "image", "text", "sat", "loc", "env", "audio"}
