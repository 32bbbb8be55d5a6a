"""Encoders: tiny random models saved in the real releases' on-disk formats and loaded back
through the user-facing code paths; the real GeoCLIP weights; preprocessing edge cases."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
import torch.nn.functional as F
from affine import Affine
from hub_repos import tokenizer_files
from open_clip_keys import hf_to_open_clip

from prom3e_geo.encoders import build_encoder
from prom3e_geo.encoders.clip_keys import open_clip_to_hf
from prom3e_geo.encoders.clip_preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_photo,
    patches_tensor,
    patches_to_pixels,
    stack_patches,
    taxabind_preprocessing,
)
from prom3e_geo.encoders.environment import EnvironmentEncoder, EnvironmentNet, EnvironmentSampler
from prom3e_geo.encoders.location import LocationEncoder, LocationNet, geoclip_weights_path
from prom3e_geo.errors import InputError
from prom3e_geo.grid import conus_boundary

# -- location: the real GeoCLIP weights -------------------------------------------------------------


@pytest.fixture(scope="module")
def geoclip():
    return LocationEncoder.load()


def _wheel_location_module():
    """geoclip's own location_encoder module, without running the package __init__ (which
    imports transformers' image stack and torchvision)."""
    root = Path(importlib.util.find_spec("geoclip").submodule_search_locations[0])
    saved = {k: sys.modules.get(k) for k in ("geoclip", "geoclip.model")}
    for name, path in (("geoclip", root), ("geoclip.model", root / "model")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        sys.modules[name] = stub
    try:
        return importlib.import_module("geoclip.model.location_encoder")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)


def test_geoclip_weights_load_strictly_and_match_the_wheels_own_model(geoclip):
    state = torch.load(geoclip_weights_path(), weights_only=True)
    assert set(state) == set(LocationNet().state_dict())
    reference = _wheel_location_module().LocationEncoder().eval()
    latlon = torch.tensor([[40.71, -74.0], [25.76, -80.19], [47.6, -122.3], [-33.9, 151.2]])
    with torch.no_grad():
        expected = reference(latlon)
        ours = geoclip.module(latlon)
    assert torch.equal(ours, expected)
    torch.testing.assert_close(geoclip.embed(latlon.numpy()), F.normalize(expected, dim=-1))


def test_subnormal_weights_are_flushed_without_changing_outputs(geoclip):
    """GeoCLIP's released weights hold tens of thousands of subnormal floats, which send CPU
    matrix products down a slow path (3x slower); loading sets them to zero, and the outputs
    stay those of the wheel's own model."""
    tiny = torch.finfo(torch.float32).tiny
    state = torch.load(geoclip_weights_path(), weights_only=True)
    before = sum(int(((v != 0) & (v.abs() < tiny)).sum()) for v in state.values())
    after = sum(
        int(((v != 0) & (v.abs() < tiny)).sum()) for v in geoclip.module.state_dict().values()
    )
    assert before > 90_000 and after == 0
    reference = _wheel_location_module().LocationEncoder().eval()
    rng = np.random.default_rng(2)
    latlon = torch.tensor(np.c_[rng.uniform(25, 49, 2000), rng.uniform(-124, -67, 2000)]).float()
    with torch.no_grad():
        torch.testing.assert_close(geoclip.module(latlon), reference(latlon), rtol=0, atol=1e-6)


def test_nearby_conus_points_are_more_similar_on_average(geoclip):
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-124, -67, 6000), rng.uniform(25, 49, 6000)
    inside = shapely.contains_xy(conus_boundary(), lon, lat)
    lon, lat = lon[inside][:1500], lat[inside][:1500]
    # pairs: each point with a jittered neighbour and with a random far point
    near_lat, near_lon = lat + rng.normal(0, 0.15, lat.size), lon + rng.normal(0, 0.15, lon.size)
    far = rng.permutation(lat.size)
    e = geoclip.embed(np.c_[lat, lon])
    near = geoclip.embed(np.c_[near_lat, near_lon])
    km = _haversine(lat, lon, lat[far], lon[far])
    cos_near = (e * near).sum(-1).numpy()
    cos_far = (e * e[far]).sum(-1).numpy()
    assert cos_near.mean() > 0.6  # measured 0.71 at a median 17 km
    assert cos_near.mean() > cos_far[km > 1000].mean() + 0.4
    assert cos_far[km < 500].mean() > cos_far[km > 2000].mean()


def test_geoclip_under_bf16_autocast_keeps_its_fourier_features_exact(geoclip):
    """On CUDA the encoders run under bf16 autocast; the random Fourier features must not (their
    phases reach thousands of radians). CPU autocast exercises the same code path."""
    rng = np.random.default_rng(1)
    latlon = torch.tensor(np.c_[rng.uniform(25, 49, 500), rng.uniform(-124, -67, 500)]).float()
    with torch.inference_mode():
        exact = F.normalize(geoclip.module(latlon), dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = F.normalize(geoclip.module(latlon).float(), dim=-1)
    assert (exact * mixed).sum(-1).min() > 0.999  # 0.41 when the features went through bf16


def _haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371 * np.arcsin(np.sqrt(a))


def test_taxabind_location_checkpoint_with_prefix(geoclip, tmp_path):
    state = {f"location_encoder.{k}": v for k, v in geoclip.module.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "taxabind-location.ckpt")
    loaded = build_encoder("loc", str(tmp_path / "taxabind-location.ckpt"))
    pts = np.array([[39.1, -94.6], [32.7, -117.2]])
    torch.testing.assert_close(loaded.embed(pts), geoclip.embed(pts))
    with pytest.raises(InputError, match="outside lat"):
        loaded.embed(np.array([[95.0, 0.0]]))


# -- environment ------------------------------------------------------------------------------------


def test_sinr_checkpoint_loads_and_matches_a_manual_forward(tmp_path):
    torch.manual_seed(0)
    net = EnvironmentNet()
    state = {**net.state_dict(), "class_emb.weight": torch.randn(10, 512)}  # SINR's species head
    torch.save(
        {"params": {"num_filts": 512, "depth": 4}, "state_dict": state}, tmp_path / "sinr.pt"
    )
    enc = EnvironmentEncoder.load(tmp_path / "sinr.pt")
    x = torch.randn(3, 20)
    h = torch.relu(x @ state["feats.0.weight"].T + state["feats.0.bias"])
    for i in range(2, 6):
        w1, b1 = state[f"feats.{i}.w1.weight"], state[f"feats.{i}.w1.bias"]
        w2, b2 = state[f"feats.{i}.w2.weight"], state[f"feats.{i}.w2.bias"]
        h = h + torch.relu(torch.relu(h @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(enc.embed(x.numpy()), F.normalize(h, dim=-1), atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match=r"\[N, 20\]"):
        enc.embed(np.zeros((2, 19)))


def _env_raster(path, crs="EPSG:4326", transform=None):
    transform = transform or Affine(1, 0, -110, 0, -1, 45)
    rows, cols = np.indices((5, 8))
    data = np.stack([b * 1000.0 + rows * 10 + cols for b in range(20)]).astype("float32")
    data[:, 2, 3] = -9999  # nodata cell
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=8,
        height=5,
        count=20,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=-9999,
    ) as ds:
        ds.write(data)
    return data


def test_environment_sampler_nearest_cell_nodata_and_outside(tmp_path):
    data = _env_raster(tmp_path / "env.tif")
    sampler = EnvironmentSampler(tmp_path / "env.tif", standardize=False)
    lon = np.array([-109.5, -106.9, -106.5, -150.0])  # cols 0, 3, 3 and outside
    lat = np.array([44.5, 42.6, 42.5, 44.0])  # rows 0, 2, 2
    out = sampler.sample(lon, lat)
    np.testing.assert_array_equal(out[0], data[:, 0, 0])
    assert (out[1] == 0).all() and (out[2] == 0).all()  # nodata -> 0
    assert (out[3] == 0).all()  # outside the raster -> 0
    z = EnvironmentSampler(tmp_path / "env.tif").sample(
        np.array([-102.5]), np.array([40.5])
    )  # row 4, col 7
    valid = np.ma.masked_equal(data, -9999).reshape(20, -1)
    expected = (data[:, 4, 7] - valid.mean(axis=1)) / valid.std(axis=1)
    np.testing.assert_allclose(z[0], expected, rtol=1e-4)


def test_environment_sampler_in_a_projected_crs_and_bad_band_count(tmp_path):
    data = _env_raster(
        tmp_path / "env5070.tif", "EPSG:5070", Affine(10000, 0, -1_000_000, 0, -10000, 2_000_000)
    )
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(5070, 4326, always_xy=True).transform(
        -1_000_000 + 65_000, 2_000_000 - 15_000
    )
    out = EnvironmentSampler(tmp_path / "env5070.tif", standardize=False).sample(
        np.array([lon]), np.array([lat])
    )
    np.testing.assert_array_equal(out[0], data[:, 1, 6])
    with rasterio.open(
        tmp_path / "three.tif",
        "w",
        driver="GTiff",
        width=2,
        height=2,
        count=3,
        dtype="float32",
        crs="EPSG:4326",
        transform=Affine(1, 0, 0, 0, -1, 2),
    ) as ds:
        ds.write(np.zeros((3, 2, 2), "float32"))
    with pytest.raises(InputError, match="has 3 bands; expected 20"):
        EnvironmentSampler(tmp_path / "three.tif")


# -- satellite --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sat_folder(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=8,
        image_size=32,
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("sat")
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def test_satellite_tower_from_a_hugging_face_folder(sat_folder):
    from transformers import CLIPVisionModelWithProjection

    enc = build_encoder("sat", str(sat_folder))
    reflectance = np.random.default_rng(0).uniform(0, 0.4, (3, 64, 64, 3)).astype("float32")
    got = enc.embed(reflectance)
    assert got.shape == (3, 16)
    reference = CLIPVisionModelWithProjection.from_pretrained(sat_folder).eval()
    with torch.no_grad():
        pixels = patches_to_pixels(stack_patches(reflectance), 32, taxabind_preprocessing(32))
        expected = reference(pixel_values=pixels).image_embeds  # TaxaBind's resize and crop
    torch.testing.assert_close(got, F.normalize(expected, dim=-1), atol=1e-5, rtol=1e-5)


def test_patch_preprocessing_reflectance_and_uint8():
    patch = np.full((1, 4, 4, 3), 0.2, dtype="float32")  # 2.5 * 0.2 = 0.5 display value
    out = patches_tensor(patch, 4)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx(
            (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], rel=1e-5
        )
    bright = patches_tensor(np.full((1, 4, 4, 3), 0.9, "float32"), 4)  # clipped at 1
    assert bright[0, 0, 0, 0].item() == pytest.approx(
        (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], rel=1e-5
    )
    as_uint8 = patches_tensor(np.full((1, 4, 4, 3), 255, "uint8"), 4)
    torch.testing.assert_close(as_uint8, bright)
    assert patches_tensor(np.zeros((2, 256, 256, 3), "float32"), 224).shape == (2, 3, 224, 224)
    with pytest.raises(InputError, match="RGB"):
        patches_tensor(np.zeros((2, 8, 8, 4), "float32"))


# -- image and text: open_clip weights through transformers ----------------------------------------

VOCAB = 54  # 26 letters, 26 word-final letters, start and end of text


@pytest.fixture(scope="module")
def tiny_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    config = CLIPConfig(
        projection_dim=16,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 8,
            "image_size": 32,
            "hidden_act": "quick_gelu",
        },
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": VOCAB,
            "max_position_embeddings": 12,
            "eos_token_id": VOCAB - 1,
            "bos_token_id": VOCAB - 2,
            "hidden_act": "quick_gelu",
        },
    )
    return CLIPModel(config).eval()


@pytest.fixture(scope="module")
def open_clip_folder(tiny_clip, tmp_path_factory):
    """The tiny model in open_clip's release layout, with a CLIP BPE tokenizer beside it."""
    folder = tmp_path_factory.mktemp("bioclip")
    torch.save(hf_to_open_clip(tiny_clip.state_dict()), folder / "open_clip_pytorch_model.bin")
    model_cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 12,
            "vocab_size": VOCAB,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    tokenizer_files(folder, VOCAB)
    return folder


def _resblock(x, sd, p, heads, causal):
    def ln(t, name):
        return F.layer_norm(t, (t.shape[-1],), sd[f"{p}.{name}.weight"], sd[f"{p}.{name}.bias"])

    b, n, d = x.shape
    h = ln(x, "ln_1")
    q, k, v = (
        h @ w.T + bb
        for w, bb in zip(
            sd[f"{p}.attn.in_proj_weight"].chunk(3),
            sd[f"{p}.attn.in_proj_bias"].chunk(3),
            strict=True,
        )
    )
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
    x = x + att @ sd[f"{p}.attn.out_proj.weight"].T + sd[f"{p}.attn.out_proj.bias"]
    h = ln(x, "ln_2") @ sd[f"{p}.mlp.c_fc.weight"].T + sd[f"{p}.mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # quick_gelu
    return x + h @ sd[f"{p}.mlp.c_proj.weight"].T + sd[f"{p}.mlp.c_proj.bias"]


def open_clip_image_reference(sd, pixels):
    """open_clip's VisionTransformer written out from its key names."""
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=8).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = F.layer_norm(x, (32,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    for i in range(2):
        x = _resblock(x, sd, f"visual.transformer.resblocks.{i}", 2, causal=False)
    pooled = F.layer_norm(x[:, 0], (32,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return pooled @ sd["visual.proj"]


def open_clip_text_reference(sd, ids):
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    for i in range(2):
        x = _resblock(x, sd, f"transformer.resblocks.{i}", 2, causal=True)
    x = F.layer_norm(x, (32,), sd["ln_final.weight"], sd["ln_final.bias"])
    return x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)] @ sd["text_projection"]


def test_open_clip_conversion_matches_an_open_clip_style_forward(tiny_clip):
    sd = hf_to_open_clip(tiny_clip.state_dict())
    pixels = torch.randn(2, 3, 32, 32)
    ids = torch.tensor(
        [
            [VOCAB - 2, 3, 4, 30, VOCAB - 1, VOCAB - 1] + [VOCAB - 1] * 6,
            [VOCAB - 2, 7, 33, VOCAB - 1] + [VOCAB - 1] * 8,
        ]
    )
    with torch.no_grad():
        image = _tensor(tiny_clip.get_image_features(pixel_values=pixels))
        text = _tensor(tiny_clip.get_text_features(input_ids=ids))
    torch.testing.assert_close(image, open_clip_image_reference(sd, pixels), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(text, open_clip_text_reference(sd, ids), atol=1e-5, rtol=1e-4)


def test_conversion_round_trips_both_ways(tiny_clip):
    hf = {k: v for k, v in tiny_clip.state_dict().items() if not k.endswith("position_ids")}
    oc = hf_to_open_clip(hf)
    back = open_clip_to_hf(oc)
    assert set(back) == set(hf) and all(torch.equal(back[k], hf[k]) for k in hf)
    again = hf_to_open_clip(back)
    assert set(again) == set(oc) and all(torch.equal(again[k], oc[k]) for k in oc)
    with pytest.raises(InputError, match="no transformers counterpart"):
        open_clip_to_hf({"visual.mystery.weight": torch.zeros(1)})


def test_image_and_text_encoders_from_an_open_clip_release(tiny_clip, open_clip_folder, tmp_path):
    from PIL import Image

    image_enc = build_encoder("image", str(open_clip_folder))
    text_enc = build_encoder("text", str(open_clip_folder))
    photo = tmp_path / "bird.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(
        photo
    )
    from prom3e_geo.encoders.clip import photo_tensor, taxabind_preprocessing

    with torch.no_grad():
        pixels = photo_tensor(load_photo(photo), prep=taxabind_preprocessing(32)).unsqueeze(0)
        expected_image = _tensor(tiny_clip.get_image_features(pixel_values=pixels))
    torch.testing.assert_close(
        image_enc.embed([photo]), F.normalize(expected_image, dim=-1), atol=1e-5, rtol=1e-4
    )
    names = ["cardinalis cardinalis", "ovis canadensis"]
    batch = text_enc.preprocess(names)
    assert batch["input_ids"].shape == (2, 12) and (batch["input_ids"][:, 0] == VOCAB - 2).all()
    sd = hf_to_open_clip(tiny_clip.state_dict())
    expected_text = open_clip_text_reference(sd, batch["input_ids"])
    torch.testing.assert_close(
        text_enc.embed(names), F.normalize(expected_text, dim=-1), atol=1e-5, rtol=1e-4
    )


def test_photo_preprocessing_exif_modes_and_refusals(tmp_path, monkeypatch):
    from PIL import Image

    from prom3e_geo.encoders import clip_preprocessing as clip

    tall = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise when displayed
    tall.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_photo(tmp_path / "rotated.jpg").size == (20, 40)
    Image.new("LA", (10, 10)).save(tmp_path / "grey.png")
    assert load_photo(tmp_path / "grey.png").mode == "RGB"
    data = (tmp_path / "rotated.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_photo(tmp_path / "truncated.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_photo(tmp_path / "notes.jpg")
    monkeypatch.setattr(clip, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="too large"):
        load_photo(tmp_path / "rotated.jpg")
    with pytest.raises(InputError, match="does not exist"):
        load_photo(tmp_path / "missing.jpg")


# -- audio ------------------------------------------------------------------------------------------


def test_clap_audio_tower_from_a_hugging_face_folder(tmp_path):
    import soundfile
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    torch.manual_seed(0)
    config = ClapAudioConfig(
        spec_size=256,
        window_size=8,
        num_mel_bins=64,
        patch_size=4,
        patch_stride=(4, 4),
        depths=[1, 1],
        num_attention_heads=[1, 2],
        patch_embeds_hidden_size=8,
        hidden_size=16,
        projection_dim=16,
        projection_hidden_size=32,
        enable_fusion=False,
    )
    ClapAudioModelWithProjection(config).save_pretrained(tmp_path / "clap")
    enc = build_encoder("audio", str(tmp_path / "clap"))
    t = np.arange(int(22050 * 2.5)) / 22050
    stereo = np.c_[np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)].astype("float32")
    soundfile.write(tmp_path / "call.wav", stereo, 22050)
    long = np.tile(stereo, (6, 1))  # 15 s: cropped by the extractor
    soundfile.write(tmp_path / "long.flac", long, 22050)
    first = enc.embed([tmp_path / "call.wav", tmp_path / "long.flac"])
    again = enc.embed([tmp_path / "call.wav", tmp_path / "long.flac"])
    assert first.shape == (2, 16)
    torch.testing.assert_close(first, again)  # repeatable, crops included
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(InputError, match="cannot be decoded"):
        enc.embed([tmp_path / "broken.wav"])

    # a recording as an SDM query goes through the audio tower
    from prom3e_geo.layers.sdm import encode_queries

    (query,) = encode_queries([str(tmp_path / "call.wav")], {"audio": enc})
    assert query.modality == "audio" and query.name == "call"
    torch.testing.assert_close(query.embedding, first[0])

    # clip length and padding follow the preprocessing (TaxaBind's config sets them)
    from prom3e_geo.encoders.audio import AudioPreprocessing

    assert not enc.preprocess([tmp_path / "call.wav"])["is_longer"].item()  # 2.5 s of 10
    enc.preprocessing = AudioPreprocessing(max_seconds=2)
    assert enc.preprocess([tmp_path / "call.wav"])["is_longer"].item()  # 2.5 s of 2


# -- registry ---------------------------------------------------------------------------------------


def test_registry_errors(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 before import
    with pytest.raises(InputError, match="unknown modality"):
        build_encoder("smell", "x")
    with pytest.raises(InputError, match="do not exist"):
        build_encoder("env", str(tmp_path / "missing.pt"))
    with pytest.raises(InputError, match="not in the hub cache"):
        build_encoder("sat", "some-org/some-satellite-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        build_encoder("image", str(tmp_path / "empty"))


def _tensor(features):
    """transformers >= 5 wraps get_*_features in a model output; 4.x returned the tensor."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output
