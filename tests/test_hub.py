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
from hub_repos import (
    AUDIO_PROCESSOR_REPO,
    CONFIG_REPO,
    ECOGEO_CONFIG,
    LAION_PREPROCESSOR,
    REPOS,
    TAXABIND_CONFIG,
    TOKENIZER_REPO,
    LocationEncoder,
    ResidualFCNet,
    build_repos,
    hub_json,
    rshf_config,
    tiny_clip,
)
from safetensors.torch import load_file

import prom3e_geo.hub
from prom3e_geo.encoders import build_encoder
from prom3e_geo.errors import DownloadError, InputError, WeightsError
from prom3e_geo.hub import HubRef, download_snapshot, parse_hub_ref
from prom3e_geo.model.checkpoint import load_prom3e
from prom3e_geo.net import RetryPolicy

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
        monkeypatch.setattr(prom3e_geo.hub, "POLICY", RetryPolicy(retries=3, backoff=0.01))
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

    from prom3e_geo.encoders.clip import (
        load_photo,
        patches_to_pixels,
        photo_tensor,
        taxabind_preprocessing,
    )

    taxabind = taxabind_preprocessing(224)

    sat = build_encoder("sat", REPOS["sat"])
    patches = np.random.default_rng(0).uniform(0, 0.3, (2, 64, 64, 3)).astype(np.float32)
    tower = CLIPVisionModelWithProjection.from_pretrained(repos[REPOS["sat"]]).eval()
    with torch.no_grad():
        pixels = patches_to_pixels(torch.from_numpy(patches), 224, taxabind)
        want = tower(pixel_values=pixels).image_embeds
    torch.testing.assert_close(sat.embed(patches), F.normalize(want, dim=-1), atol=1e-5, rtol=1e-4)

    clip = tiny_clip()  # the same seeded weights the open_clip release was written from
    image = build_encoder("image", f"hf-hub:{REPOS['image']}")
    with torch.no_grad():
        pixels = photo_tensor(load_photo(CARDINAL), prep=taxabind).unsqueeze(0)
        want = clip.get_image_features(pixel_values=pixels)
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
    assert "open_clip_pytorch_model.bin" not in got  # one weights file: safetensors preferred
    assert "vocab.json" in got  # the release's own tokenizer files, no fallback repository
    assert not any(f"/{TOKENIZER_REPO}/" in p for _, p, _ in hub.requests)


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
    fetched = download_snapshot(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert hub.api_500 == 0 and (fetched.path / "model.safetensors").is_file()


def test_a_file_that_does_not_match_its_etag_is_refused_and_removed(hub):
    hub.corrupt.add("model.safetensors")
    with pytest.raises(WeightsError, match="does not match its ETag") as err:
        download_snapshot(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert "\n" not in str(err.value)
    hub.corrupt.clear()  # the next run fetches it again, whole
    fetched = download_snapshot(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
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


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_the_published_taxabind_configuration_is_read_as_published(hub, repos):
    from prom3e_geo.encoders.audio import AudioPreprocessing
    from prom3e_geo.encoders.clip import Preprocessing
    from prom3e_geo.engine.presets import taxabind_recipe

    recipe = taxabind_recipe()  # 9b4982c's fields: env_encoder, audio_truncation "fusion"
    assert recipe.model == "MVRL/ProM3E"
    assert recipe.encoders == {
        "image": "hf-hub:MVRL/taxabind-vit-b-16", "text": "hf-hub:MVRL/taxabind-vit-b-16",
        "sat": "MVRL/ecosat", "loc": "MVRL/ecogeo", "env": "MVRL/ecoclim", "audio": "MVRL/ecosound",
    }  # fmt: skip
    assert recipe.preprocessing["image"] == Preprocessing(224, 256, MEAN, STD)
    assert recipe.preprocessing["sat"] == Preprocessing(224, 256, MEAN, STD)
    assert recipe.preprocessing["audio"] == AudioPreprocessing(
        48_000, 10.0, "repeatpad", "fusion", None
    )
    assert recipe.origins == {"config": f"{CONFIG_REPO}@{hub.commits[CONFIG_REPO]}"}
    assert set(recipe.hub_downloads()) == {"model", "image", "text", "sat", "loc", "env", "audio"}


def test_the_rshf_spelling_of_the_configuration_is_read_too(hub, repos):
    from prom3e_geo.engine.presets import taxabind_recipe

    hub.add_repo(CONFIG_REPO, rshf_config(repos))  # `sinr`, `get_audio_processor`, truncation true
    recipe = taxabind_recipe()
    assert recipe.encoders["env"] == "MVRL/ecoclim"
    audio = recipe.preprocessing["audio"]
    assert audio.truncation is True and audio.processor == AUDIO_PROCESSOR_REPO
    assert recipe.hub_downloads()["audio processor"][0] == HubRef(AUDIO_PROCESSOR_REPO)


def test_a_configuration_without_a_tower_names_the_field_and_its_commit(hub, repos, tmp_path):
    from prom3e_geo.engine.presets import taxabind_recipe

    (tmp_path / "config.json").write_text(
        hub_json({k: v for k, v in TAXABIND_CONFIG.items() if k != "env_encoder"})
    )
    commit = hub.add_repo(CONFIG_REPO, tmp_path)
    with pytest.raises(WeightsError) as err:
        taxabind_recipe()
    message = str(err.value)
    assert f"{CONFIG_REPO}@{commit[:7]}" in message and "env_encoder or sinr" in message
    assert "\n" not in message


def test_towers_get_taxabinds_preprocessing_from_the_preset_and_from_build_encoder(hub, repos):
    """Photo and patch tensors equal TaxaBind's transforms computed independently with PIL:
    Resize((256, 256)) bilinear, CenterCrop(224), ToTensor, ImageNet Normalize."""
    from PIL import Image

    from prom3e_geo.encoders.clip import patches_to_pixels
    from prom3e_geo.engine.presets import taxabind_recipe

    def taxabind_transform(img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB").resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240))
        x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)

    photo = Image.open(CARDINAL)
    want = taxabind_transform(photo)
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)  # s2cloudless patches
    want_sat = torch.stack([taxabind_transform(Image.fromarray(p)) for p in patches])
    preset = taxabind_recipe().preprocessing
    for image, sat in (
        (build_encoder("image", f"hf-hub:{REPOS['image']}"), build_encoder("sat", REPOS["sat"])),
        (
            build_encoder("image", f"hf-hub:{REPOS['image']}", preprocessing=preset["image"]),
            build_encoder("sat", REPOS["sat"], preprocessing=preset["sat"]),
        ),
    ):
        torch.testing.assert_close(image.preprocess([CARDINAL])[0], want, atol=1e-6, rtol=0)
        pixels = patches_to_pixels(sat.preprocess(patches), 224, sat.preprocessing)
        torch.testing.assert_close(pixels, want_sat, atol=1e-6, rtol=0)


def test_the_audio_extractor_is_laions_when_the_tower_has_none(hub, repos, tmp_path):
    from transformers import ClapFeatureExtractor

    from prom3e_geo.encoders.audio import AudioEncoder, AudioPreprocessing

    (tmp_path / "preprocessor_config.json").write_text(hub_json(LAION_PREPROCESSOR))
    laion = ClapFeatureExtractor.from_pretrained(str(tmp_path))
    keys = ("feature_size", "sampling_rate", "hop_length", "fft_window_size", "frequency_min",
            "frequency_max", "top_db", "padding", "padding_value", "nb_max_samples")  # fmt: skip
    fused = build_encoder("audio", REPOS["audio"])  # ecosound ships no preprocessor_config.json
    assert {k: getattr(fused.extractor, k) for k in keys} == {k: getattr(laion, k) for k in keys}
    assert fused.extractor.frequency_min == 50 and fused.extractor.frequency_max == 14000
    wave = np.sin(np.linspace(0, 2000, 48_000 * 3)).astype(np.float32)
    np.testing.assert_allclose(
        fused.extractor.mel_filters, laion.mel_filters, rtol=0, atol=0
    )  # the same mel bank: features equal laion's processor
    named = build_encoder(
        "audio", REPOS["audio"], preprocessing=AudioPreprocessing(processor=AUDIO_PROCESSOR_REPO)
    )
    assert named.extractor.to_dict() | {"truncation": 0} == laion.to_dict() | {"truncation": 0}
    assert fused.embed([wave]).shape == (1, 512)

    unfused = tmp_path / "unfused"
    from transformers import ClapAudioModelWithProjection

    model = ClapAudioModelWithProjection.from_pretrained(str(repos[REPOS["audio"]]))
    model.config.enable_fusion = False
    model.save_pretrained(unfused)
    with pytest.raises(InputError, match="'fusion' needs a CLAP tower trained with fusion"):
        AudioEncoder.load(unfused, preprocessing=AudioPreprocessing(truncation="fusion"))
    strict = AudioEncoder.load(unfused, preprocessing=AudioPreprocessing(truncation=True))
    assert strict.embed([wave]).shape == (1, 512)  # a short clip: repeat-padded as upstream
    long = np.zeros(48_000 * 12, np.float32)
    with pytest.raises(InputError, match="lasts 12.0 s.*at most 10 s"):
        strict.embed([long])


def test_a_geoclip_configuration_sets_the_architecture_and_is_checked(hub, repos, tmp_path):
    import shutil

    from prom3e_geo.encoders.location import LocationEncoder as Ours

    other = tmp_path / "other"
    config = {**ECOGEO_CONFIG, "sigma": [2, 32]}
    LocationEncoder(config).save_pretrained(other)
    (other / "config.json").write_text(hub_json(config))
    loc = Ours.load(other)
    reference = LocationEncoder.from_pretrained(other).eval()
    latlon = np.array([[38.9, -77.0], [47.6, -122.3]])
    want = F.normalize(reference(torch.tensor(latlon, dtype=torch.float32)), dim=-1)
    torch.testing.assert_close(loc.embed(latlon), want, atol=1e-5, rtol=1e-5)

    for bad, message in (
        ({**ECOGEO_CONFIG, "capsule_depth": 4}, "sets capsule_depth"),
        ({**ECOGEO_CONFIG, "input_size": 3}, "input_size 3"),
        ({**ECOGEO_CONFIG, "dim": 256}, "dim 256"),
    ):
        folder = tmp_path / message.split()[-1]
        shutil.copytree(repos[REPOS["loc"]], folder)
        (folder / "config.json").write_text(hub_json(bad))
        with pytest.raises(WeightsError, match=message):
            Ours.load(folder)
    wrong = tmp_path / "wrong-sigmas"
    shutil.copytree(repos[REPOS["loc"]], wrong)
    (wrong / "config.json").write_text(hub_json({**ECOGEO_CONFIG, "sigma": [1, 16]}))
    with pytest.raises(WeightsError, match="does not consume"):
        Ours.load(wrong)  # two capsules configured, three stored: refused, not half-loaded


def test_a_server_that_keeps_failing_is_a_download_error_not_bad_input(hub):
    hub.api_500 = 100
    with pytest.raises(
        DownloadError, match=f"{REPOS['env']}.*kept failing \\(HTTP 500\\) after 3 retries"
    ) as err:
        download_snapshot(HubRef(REPOS["env"]), ["config.json", "model.safetensors"])
    assert "\n" not in str(err.value) and not isinstance(err.value, InputError)
