"""Tiny repositories in the exact layout of the released ones, for the hub stand-in.

Names, files and configuration keys copy MVRL's published repositories as their public hub pages
show them (read 2026-12-03):

* `MVRL/taxabind-config` @ 9b4982c: `config.json` (543 bytes), the fields of `TAXABIND_CONFIG`
  (from the commit's diff page: `env_encoder`, `audio_truncation: "fusion"`, `image_resize` and
  `sat_resize` 256, no `get_audio_processor`); `RSHF_CONFIG` is the same configuration in the
  spelling rshf's `TaxaBindConfig` documents (`sinr`, `get_audio_processor`, `audio_truncation`
  true), which a later revision may carry;
* `MVRL/ecogeo`: rshf's `GeoCLIP(config)` through `PyTorchModelHubMixin`: `config.json` exactly as
  published (136 bytes: dim 512, encoded_size 256, input_size 2, sigma [1, 16, 256],
  transformers_version 4.45.2) + `model.safetensors`;
* `MVRL/ecoclim`: SINR's `ResidualFCNet` through the mixin, `config.json` + `model.safetensors`
  (the published weights have no species head; the 113-byte config's text is not public, so its
  keys are the class's constructor arguments);
* `MVRL/ecosat`: a transformers `CLIPVisionModelWithProjection` folder;
* `MVRL/ecosound`: a transformers `ClapAudioModelWithProjection` folder, config.json +
  model.safetensors and no `preprocessor_config.json`;
* `MVRL/taxabind-vit-b-16`: open_clip's hub layout with `open_clip_config.json`,
  `open_clip_model.safetensors`, `open_clip_pytorch_model.bin`, `vocab.json` and `merges.txt`;
* `laion/clap-htsat-unfused`: its `preprocessor_config.json` (the processor rshf builds for the
  audio tower; the values are those of `encoders.audio.LAION_UNFUSED`).

The model classes follow rshf's structure (module names, hence state-dict keys; constructor
arguments, hence `config.json` fields) and are saved with `huggingface_hub`'s own
`PyTorchModelHubMixin.save_pretrained` or by `transformers`; only the sizes are tiny.
"""

from __future__ import annotations

import io
import json
import string
import zipfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from huggingface_hub import PyTorchModelHubMixin
from open_clip_keys import hf_to_open_clip
from rasterio.transform import from_origin
from torch import nn

from prom3e_geo.model.prom3e import ProM3E, ProM3EConfig

VOCAB = 64
DIM = 512  # every TaxaBind tower ends in 512 dimensions
CONFIG_REPO = "MVRL/taxabind-config"
REPOS = {
    "model": "MVRL/ProM3E",
    "image": "MVRL/taxabind-vit-b-16",
    "sat": "MVRL/ecosat",
    "loc": "MVRL/ecogeo",
    "env": "MVRL/ecoclim",
    "audio": "MVRL/ecosound",
}
AUDIO_PROCESSOR_REPO = "laion/clap-htsat-unfused"
TAXABIND_CONFIG = {  # MVRL/taxabind-config @ 9b4982c, config.json
    "audio_encoder": "MVRL/ecosound", "audio_max_length_s": 10, "audio_padding": "repeatpad",
    "audio_sample_rate": 48000, "audio_truncation": "fusion",
    "clip": "hf-hub:MVRL/taxabind-vit-b-16", "env_encoder": "MVRL/ecoclim", "image_crop": 224,
    "image_resize": 256, "location_encoder": "MVRL/ecogeo",
    "normalize_mean": [0.485, 0.456, 0.406], "normalize_std": [0.229, 0.224, 0.225],
    "sat_crop": 224, "sat_encoder": "MVRL/ecosat", "sat_resize": 256,
    "transformers_version": "4.45.2",
}  # fmt: skip
RSHF_CONFIG = {  # the same in rshf TaxaBindConfig's spelling
    **{k: v for k, v in TAXABIND_CONFIG.items() if k != "env_encoder"},
    "sinr": "MVRL/ecoclim", "get_audio_processor": AUDIO_PROCESSOR_REPO, "audio_truncation": True,
}  # fmt: skip
ECOGEO_CONFIG = {"dim": 512, "encoded_size": 256, "input_size": 2, "sigma": [1, 16, 256],
                 "transformers_version": "4.45.2"}  # fmt: skip
LAION_PREPROCESSOR = {  # laion/clap-htsat-unfused, preprocessor_config.json (541 bytes)
    "chunk_length_s": 10, "feature_extractor_type": "ClapFeatureExtractor", "feature_size": 64,
    "fft_window_size": 1024, "frequency_max": 14000, "frequency_min": 50, "hop_length": 480,
    "max_length_s": 10, "n_fft": 1024, "nb_frequency_bins": 513, "nb_max_frames": 1000,
    "nb_max_samples": 480000, "padding": "repeatpad", "padding_side": "right",
    "padding_value": 0.0, "processor_class": "ClapProcessor", "return_attention_mask": False,
    "sampling_rate": 48000, "top_db": None, "truncation": "rand_trunc",
}  # fmt: skip


def hub_json(data: dict) -> str:
    """JSON as transformers writes a config: sorted keys, two-space indent, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


TOKENIZER_REPO = "openai/clip-vit-base-patch16"
PROM3E_CONFIG = {  # rshf ProM3EConfig's fields
    "input_dim": DIM, "embed_dim": 32, "num_modalities": 6, "masked_only": False, "depth": 1,
    "heads": 2, "mlp_dim": 64, "num_register_tokens": 4, "num_cls_tokens": 2, "dropout": 0.0,
    "lambda_kl": 0.001,
}  # fmt: skip


class HubProM3E(ProM3E, PyTorchModelHubMixin):
    """rshf's `ProM3E(config)`: one dict argument, parameters named as in the official code."""

    def __init__(self, config: dict):
        super().__init__(ProM3EConfig.from_dict(config))


class GaussianEncoding(nn.Module):
    def __init__(self, sigma: float):
        super().__init__()
        self.b = nn.Parameter(torch.randn(256, 2) * sigma, requires_grad=False)

    def forward(self, v):
        vp = 2 * np.pi * v @ self.b.T
        return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class LocationEncoderCapsule(nn.Module):
    def __init__(self, sigma: float):
        super().__init__()
        self.capsule = nn.Sequential(
            GaussianEncoding(sigma), nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024),
            nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(1024, 512))

    def forward(self, x):
        return self.head(self.capsule(x))


class LocationEncoder(nn.Module, PyTorchModelHubMixin):
    """rshf's GeoCLIP `LocationEncoder(config)`: one capsule per `sigma` (encoded size 256,
    width 512 as in `ECOGEO_CONFIG`)."""

    def __init__(self, config: dict):
        super().__init__()
        self.sigma = list(config["sigma"])
        for i, s in enumerate(self.sigma):
            self.add_module(f"LocEnc{i}", LocationEncoderCapsule(s))

    def forward(self, latlon):
        from prom3e_geo.encoders.location import equal_earth

        v = equal_earth(latlon)
        return sum(self._modules[f"LocEnc{i}"](v) for i in range(len(self.sigma)))


class ResLayer(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.w1, self.w2, self.dropout1 = nn.Linear(size, size), nn.Linear(size, size), nn.Dropout()

    def forward(self, x):
        return x + torch.relu(self.w2(self.dropout1(torch.relu(self.w1(x)))))


class ResidualFCNet(nn.Module, PyTorchModelHubMixin):
    """SINR's `ResidualFCNet(num_inputs, num_classes, num_filts, depth)`."""

    def __init__(self, num_inputs=4, num_classes=10, num_filts=256, depth=4):
        super().__init__()
        self.class_emb = nn.Linear(num_filts, num_classes, bias=False)
        layers = [nn.Linear(num_inputs, num_filts), nn.ReLU()]
        layers += [ResLayer(num_filts) for _ in range(depth)]
        self.feats = nn.Sequential(*layers)

    def forward(self, x):
        return self.feats(x)


def tiny_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "hidden_act": "gelu"}  # fmt: skip
    config = CLIPConfig(
        projection_dim=DIM,
        vision_config={**tower, "patch_size": 32, "image_size": 224},
        text_config={
            **tower,
            "vocab_size": VOCAB,
            "max_position_embeddings": 16,
            "eos_token_id": VOCAB - 1,
            "bos_token_id": VOCAB - 2,
        },  # fmt: skip
    )
    return CLIPModel(config).eval()


def tokenizer_files(folder: Path, vocab_size: int = VOCAB) -> Path:
    """A small CLIP BPE vocabulary (letters; start and end of text are the last two ids) in the
    layout of OpenAI's CLIP repository."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = string.ascii_lowercase
    vocab = {c: i for i, c in enumerate(letters)} | {
        c + "</w>": 26 + i for i, c in enumerate(letters)
    }
    vocab |= {"<|startoftext|>": vocab_size - 2, "<|endoftext|>": vocab_size - 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))  # fmt: skip
    return folder


def rshf_config(folders: dict[str, Path]) -> Path:
    """The folder of the configuration in rshf's spelling (served as `CONFIG_REPO` on demand)."""
    return folders[CONFIG_REPO].parent / "taxabind-config-rshf"


def build_repos(root: Path, fused_audio: bool = True) -> dict[str, Path]:
    """Folders for every repository of the `taxabind` preset (see the module docstring), with the
    published configuration; `rshf_config(folders)` holds `RSHF_CONFIG`'s variant."""
    from safetensors.torch import save_file
    from transformers import (
        ClapAudioConfig,
        ClapAudioModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    names = [CONFIG_REPO, *REPOS.values(), AUDIO_PROCESSOR_REPO]
    folders = {name: root / name.replace("/", "--") for name in names}
    HubProM3E(dict(PROM3E_CONFIG)).save_pretrained(folders[REPOS["model"]])
    LocationEncoder(dict(ECOGEO_CONFIG)).save_pretrained(folders[REPOS["loc"]])
    (folders[REPOS["loc"]] / "config.json").write_text(hub_json(ECOGEO_CONFIG))
    ResidualFCNet(num_inputs=20, num_classes=10, num_filts=512, depth=4).save_pretrained(
        folders[REPOS["env"]]
    )
    sat = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, patch_size=32, image_size=224, projection_dim=DIM)  # fmt: skip
    CLIPVisionModelWithProjection(sat).save_pretrained(folders[REPOS["sat"]])
    clip = folders[REPOS["image"]]
    clip.mkdir(parents=True)
    state = hf_to_open_clip(tiny_clip().state_dict())
    torch.save(state, clip / "open_clip_pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in state.items()}, clip / "open_clip_model.safetensors")
    model_cfg = {"embed_dim": DIM,
                 "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
                 "text_cfg": {"context_length": 16, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    vocab = tokenizer_files(root / "vocab")
    for name in ("vocab.json", "merges.txt"):  # the repository's tokenizer files: these two only
        (clip / name).write_bytes((vocab / name).read_bytes())
    audio = ClapAudioConfig(spec_size=256, window_size=8, num_mel_bins=64, patch_size=4,
                            patch_stride=(4, 4), depths=[1, 1], num_attention_heads=[1, 2],
                            patch_embeds_hidden_size=8, hidden_size=16, projection_dim=DIM,
                            projection_hidden_size=32, enable_fusion=fused_audio)  # fmt: skip
    ClapAudioModelWithProjection(audio).save_pretrained(folders[REPOS["audio"]])
    folders[AUDIO_PROCESSOR_REPO].mkdir(parents=True)
    (folders[AUDIO_PROCESSOR_REPO] / "preprocessor_config.json").write_text(
        hub_json(LAION_PREPROCESSOR)
    )
    folders[CONFIG_REPO].mkdir(parents=True)
    (folders[CONFIG_REPO] / "config.json").write_text(hub_json(TAXABIND_CONFIG))
    rshf_config(folders).mkdir()
    (rshf_config(folders) / "config.json").write_text(hub_json(RSHF_CONFIG))
    folders[TOKENIZER_REPO] = tokenizer_files(root / "openai--clip")
    return folders


# -- WorldClim ------------------------------------------------------------------------------------
WORLDCLIM_SHAPE = (18, 36)  # 10-degree cells over the globe


def worldclim_bands(seed: int = 3) -> dict[str, np.ndarray]:
    """Raw values of the 20 WorldClim files (float32, -3.4e38 over the 'oceans')."""
    rng = np.random.default_rng(seed)
    ocean = np.zeros(WORLDCLIM_SHAPE, bool)
    ocean[:, :5] = True
    ocean[0] = True
    names = ["wc2.1_5m_elev.tif"] + [f"wc2.1_5m_bio_{i}.tif" for i in range(1, 20)]
    bands = {}
    for k, name in enumerate(names):
        values = rng.normal(100 * (k + 1), 10 * (k + 1), WORLDCLIM_SHAPE).astype(np.float32)
        values[ocean] = np.float32(-3.4e38)
        bands[name] = values
    return bands


def worldclim_tif(values: np.ndarray) -> bytes:
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
                      dtype="float32", crs="EPSG:4326", transform=from_origin(-180, 90, 10, 10),
                      nodata=-3.4e38) as dst:  # fmt: skip
            dst.write(values, 1)
        return mem.read()


def worldclim_archives(bands: dict[str, np.ndarray]) -> dict[str, bytes]:
    """`wc2.1_5m_elev.zip` and `wc2.1_5m_bio.zip` as WorldClim serves them."""
    archives = {}
    for archive, prefix in (
        ("wc2.1_5m_elev.zip", "wc2.1_5m_elev"),
        ("wc2.1_5m_bio.zip", "wc2.1_5m_bio_"),
    ):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, values in bands.items():
                if name.startswith(prefix):
                    zf.writestr(name, worldclim_tif(values))
        archives[archive] = buffer.getvalue()
    return archives
