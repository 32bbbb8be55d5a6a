"""CLIP ViT towers through `transformers`: satellite (sat), ground image (image) and text.

* **Satellite**: TaxaBind's SatBind tower is a `CLIPVisionModelWithProjection` (ViT-B/16, 224 px,
  projection 512) saved in the Hugging Face layout; it loads as is.
* **Image and text**: the BioCLIP / TaxaBind ViT-B/16 towers are open_clip checkpoints
  (`open_clip_pytorch_model.bin` or `.safetensors` + `open_clip_config.json`), converted into a
  `transformers.CLIPModel` on load (`clip_keys`).

The towers preprocess as `clip_preprocessing` says (TaxaBind's transforms).

The preprocessing names are re-exported here, where the presets, patch sources and the demo
plug-in import them from.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.clip_keys import clip_config_from_open_clip, open_clip_to_hf
from prom3e_geo.encoders.clip_preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    REFLECTANCE_GAIN,
    Preprocessing,
    load_photo,
    normalize,
    patches_to_pixels,
    photo_tensor,
    stack_patches,
    taxabind_preprocessing,
)
from prom3e_geo.errors import InputError
from prom3e_geo.hub import Fetched

if TYPE_CHECKING:  # transformers is imported only when a tower is loaded
    from PIL.Image import Image
    from transformers import CLIPModel, CLIPTokenizer, CLIPVisionModelWithProjection
    from transformers.modeling_utils import PreTrainedModel

    Loaded = TypeVar("Loaded", bound=PreTrainedModel)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REFLECTANCE_GAIN",
    "ImageEncoder",
    "Preprocessing",
    "SatelliteEncoder",
    "TextEncoder",
    "load_clip_model",
    "load_image_encoder",
    "load_photo",
    "load_text_encoder",
    "normalize",
    "patches_to_pixels",
    "photo_tensor",
    "stack_patches",
    "taxabind_preprocessing",
]

OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@lru_cache(maxsize=2)
def load_clip_model(path: str | Path) -> CLIPModel:
    """A `transformers.CLIPModel` from a Hugging Face CLIP folder, an open_clip folder
    (`open_clip_config.json` + weights), or a bare open_clip weights file. Cached per path:
    the image and text encoders of one checkpoint share one model."""
    import json

    from transformers import CLIPModel

    from prom3e_geo.encoders.state_dicts import load_state_dict

    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return _from_pretrained(CLIPModel, path)
    weights = path
    model_cfg = None
    if path.is_dir():
        found = [path / n for n in OPEN_CLIP_WEIGHTS if (path / n).is_file()]
        if not found:
            raise InputError(
                f"{path} holds neither config.json nor {' / '.join(OPEN_CLIP_WEIGHTS)}"
            )
        weights = found[0]
        if (path / "open_clip_config.json").is_file():
            model_cfg = json.loads((path / "open_clip_config.json").read_text()).get("model_cfg")
    state = load_state_dict(weights)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "visual.conv1.weight" not in state:
        raise InputError(f"{weights} is not an open_clip CLIP checkpoint (no visual.conv1.weight)")
    model = CLIPModel(clip_config_from_open_clip(state, model_cfg))
    missing, unexpected = model.load_state_dict(open_clip_to_hf(state), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(
            f"{weights}: converted keys do not fit CLIPModel: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    return model


def _from_pretrained(cls: type[Loaded], path: Path) -> Loaded:
    try:
        return cls.from_pretrained(str(path), local_files_only=True, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot load {cls.__name__} from {path}: {' '.join(str(exc).split())[:200]}"
        ) from None


class SatelliteEncoder(Encoder):
    """Sentinel-2 RGB patches -> 512-d embeddings (CLIPVisionModelWithProjection)."""

    modality = "sat"

    @classmethod
    def load(
        cls, path: str | Path, device: str = "cpu", preprocessing: Preprocessing | None = None
    ) -> SatelliteEncoder:
        from transformers import CLIPVisionModelWithProjection

        module = _from_pretrained(CLIPVisionModelWithProjection, Path(path))
        return cls(module, device, preprocessing=preprocessing)

    def __init__(
        self,
        module: CLIPVisionModelWithProjection,
        device: str = "cpu",
        amp: str = "bf16",
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(module, device, amp)
        self.vision = module
        self.image_size = _config_int(module.config, "image_size")
        self.preprocessing = _checked(preprocessing, self.image_size, "satellite")
        self.batch_size = 64
        if self.device.type == "cuda":
            self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack the keyword nn.Module.to takes

    def preprocess(self, raw: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Only stacks the patches: scaling and resizing happen on the device, in `forward`."""
        return stack_patches(raw)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = patches_to_pixels(batch, self.image_size, self.preprocessing)
        if self.device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        embeds: torch.Tensor = self.vision(pixel_values=pixels).image_embeds
        return embeds


class ImageEncoder(Encoder):
    """Photos (file paths or PIL images) -> 512-d embeddings (the CLIP image tower)."""

    modality = "image"

    def __init__(
        self,
        clip_model: CLIPModel,
        device: str = "cpu",
        amp: str = "bf16",
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(clip_model, device, amp)
        self.clip = clip_model
        self.image_size = _config_int(clip_model.config.vision_config, "image_size")
        self.preprocessing = _checked(preprocessing, self.image_size, "photo")
        self.batch_size = 64

    def preprocess(self, raw: Sequence[str | Path | Image]) -> torch.Tensor:
        images = [load_photo(r) if isinstance(r, (str, Path)) else r.convert("RGB") for r in raw]
        return torch.stack([photo_tensor(img, prep=self.preprocessing) for img in images])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return _features(self.clip.get_image_features(pixel_values=batch))


class TextEncoder(Encoder):
    """Taxonomic names -> 512-d embeddings (the CLIP text tower)."""

    modality = "text"

    def __init__(
        self,
        clip_model: CLIPModel,
        tokenizer: CLIPTokenizer,
        device: str = "cpu",
        amp: str = "bf16",
    ) -> None:
        super().__init__(clip_model, device, amp)
        self.clip, self.tokenizer = clip_model, tokenizer
        self.context = _config_int(clip_model.config.text_config, "max_position_embeddings")

    def preprocess(self, raw: Sequence[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(raw),
            padding="max_length",
            truncation=True,
            max_length=self.context,
            return_tensors="pt",
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return _features(self.clip.get_text_features(**batch))


def _checked(prep: Preprocessing | None, image_size: int, tower: str) -> Preprocessing:
    """TaxaBind's preprocessing by default; a given one must crop to the tower's input size."""
    if prep is None:
        return taxabind_preprocessing(image_size)
    if prep.crop != image_size:
        raise InputError(
            f"the {tower} tower takes {image_size} px inputs; its preprocessing crops to {prep.crop}"
        )
    return prep


def _config_int(config: object, key: str) -> int:
    """A whole-number field of a CLIP tower's config (every released config has them)."""
    value = getattr(config, key, None)
    if not isinstance(value, int):
        raise InputError(f"the CLIP config has no whole-number {key} (found {value!r})")
    return value


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    pooled: torch.Tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return pooled


# open_clip's tokenizer is the CLIP BPE (49,408 tokens, `bpe_simple_vocab_16e6`); an open_clip
# repository need not hold it, and then the same vocabulary is taken from OpenAI's CLIP repository
CLIP_TOKENIZER_REPO = "openai/clip-vit-base-patch16"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def load_image_encoder(
    path: str | Path, device: str = "cpu", preprocessing: Preprocessing | None = None
) -> ImageEncoder:
    """The image tower of a CLIP folder or open_clip weights (see `load_clip_model`)."""
    return ImageEncoder(load_clip_model(Path(path)), device, preprocessing=preprocessing)


def load_text_encoder(path: str | Path, device: str = "cpu") -> TextEncoder:
    """The text tower of a CLIP folder or open_clip weights, with the CLIP BPE tokenizer files
    (vocab.json + merges.txt) beside the weights, else those of `CLIP_TOKENIZER_REPO`."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not has_tokenizer(folder):
        folder = fetch_clip_tokenizer().path
    return TextEncoder(load_clip_model(path), _clip_tokenizer(folder), device)


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds the CLIP BPE tokenizer files."""
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def fetch_clip_tokenizer() -> Fetched:
    """The standard CLIP BPE tokenizer files, from `CLIP_TOKENIZER_REPO` (or the hub cache)."""
    from prom3e_geo.hub import HubRef, download_snapshot

    return download_snapshot(HubRef(CLIP_TOKENIZER_REPO), TOKENIZER_FILES, "CLIP tokenizer")


def _clip_tokenizer(folder: Path) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    try:
        tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        return tokenizer
    except (OSError, ValueError, TypeError):
        raise InputError(
            f"no usable CLIP tokenizer (vocab.json + merges.txt) in {folder}"
        ) from None
