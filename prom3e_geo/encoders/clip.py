"""CLIP ViT towers through `transformers`: satellite (sat), ground image (image) and text.

* **Satellite**: TaxaBind's SatBind tower is a `CLIPVisionModelWithProjection` (ViT-B/16, 224 px,
  projection 512) saved in the Hugging Face layout; it loads as is.
* **Image and text**: the BioCLIP / TaxaBind ViT-B/16 towers are open_clip checkpoints
  (`open_clip_pytorch_model.bin` or `.safetensors` + `open_clip_config.json`). They are converted
  key by key into a `transformers.CLIPModel` (`open_clip_to_hf`; `hf_to_open_clip` goes back), so
  neither open_clip nor torchvision is needed.

Preprocessing is TaxaBind's wherever a tower is loaded (`taxabind_preprocessing`): the input is
squashed to 256 x 256 (bilinear, as torchvision's `Resize((256, 256))` on a PIL image), centre-
cropped to 224 and normalised with the ImageNet mean/std (TaxaBind's statistics, not OpenAI
CLIP's); a tower of another input size keeps the 256/224 ratio. A preset's configuration may set
other sizes (`Preprocessing`), given to the tower when it is built. Photos: EXIF orientation
applied, converted to RGB; truncated files, non-images and decompression bombs are refused with a
one-line error. Satellite patches arrive from the patch sources as [H, W, 3]: uint8 display RGB
(the JPEG tiles of Sentinel-2 cloudless, what TaxaBind's satellite tower was trained on) is taken
as is (value / 255); float surface reflectance (Sentinel-2 L2A B04, B03, B02 = DN / 10000 after
the processing-baseline offset) is first mapped to display RGB as in Sentinel Hub's true-colour
script, RGB = clip(2.5 * reflectance, 0, 1).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFLECTANCE_GAIN = 2.5
IMAGE_SIZE = 224
TAXABIND_RESIZE = 256  # TaxaBind's transforms: Resize((256, 256)), then CenterCrop(224)
MAX_IMAGE_PIXELS = 89_478_485  # PIL's default bomb threshold (about 0.25 GB of RGB)


@dataclass(frozen=True)
class Preprocessing:
    """Resize, centre-crop and normalise. `resize` None keeps the aspect ratio (the shorter side
    to `crop`); a number squashes to `resize` x `resize` first, as TaxaBind's
    `Resize((r, r))` does (its config's `image_resize` / `sat_resize`)."""

    crop: int = IMAGE_SIZE
    resize: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def taxabind_preprocessing(crop: int = IMAGE_SIZE) -> Preprocessing:
    """TaxaBind's evaluation transform for a tower of input size `crop`: squash to 256 x 256,
    centre-crop 224 (`mvrl/TaxaBind` SatBind/LocationBind dataloaders, and `MVRL/taxabind-config`'s
    `image_resize`/`sat_resize` 256); other input sizes keep the 256/224 ratio."""
    return Preprocessing(crop=crop, resize=round(crop * TAXABIND_RESIZE / IMAGE_SIZE))


def _crop_start(size: int, crop: int) -> int:
    """torchvision's `CenterCrop` offset: round((size - crop) / 2), halves to even."""
    return int(round((size - crop) / 2.0))


# -- preprocessing --------------------------------------------------------------------------------
def load_photo(path: str | Path):
    """Open a photo as RGB with EXIF orientation applied; one-line errors for bad files."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
            try:
                with Image.open(path) as img:
                    img.load()
                    img = ImageOps.exif_transpose(img)
                    return img.convert("RGB")
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError:
        raise InputError(f"image {path} is not an image file PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"image {path} is too large (over {MAX_IMAGE_PIXELS:,} pixels); refusing it"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {path} is truncated or corrupt: {exc}") from None


def photo_tensor(image, size: int = IMAGE_SIZE, prep: Preprocessing | None = None) -> torch.Tensor:
    """[3, crop, crop] by `prep` (default: the shorter side to `size`): the photo squashed to
    resize x resize (bilinear) or, with `resize` None, its shorter side resized to the crop
    (bicubic); centre-cropped and normalised. The towers pass TaxaBind's."""
    from PIL import Image

    prep = prep or Preprocessing(crop=size)
    size = prep.crop
    if prep.resize:
        resized = image.resize((prep.resize, prep.resize), Image.BILINEAR)
    else:
        w, h = image.size
        scale = size / min(w, h)
        resized = image.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC
        )
    left, top = _crop_start(resized.width, size), _crop_start(resized.height, size)
    crop = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return normalize(torch.from_numpy(crop).permute(2, 0, 1), prep.mean, prep.std)


def normalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean_t) / std_t


def stack_patches(patches: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Satellite patches [H, W, 3] -> one [B, H, W, 3] tensor: uint8 and float16 kept (half or a
    quarter of the bytes to move to a GPU), other floats as float32."""
    batch = (
        np.stack([np.asarray(p) for p in patches])
        if not isinstance(patches, np.ndarray)
        else patches
    )
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise InputError(f"satellite patches must be [N, H, W, 3] RGB, got {batch.shape}")
    if batch.dtype not in (np.uint8, np.float16):
        batch = batch.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(batch))


def patches_to_pixels(
    batch: torch.Tensor, size: int = IMAGE_SIZE, prep: Preprocessing | None = None
) -> torch.Tensor:
    """[B, H, W, 3] reflectance (float) or display RGB (uint8) -> normalised [B, 3, crop, crop]:
    resized to `prep.resize` (no resize given: to the crop), centre-cropped to `prep.crop`; `prep`
    defaults to a plain resize to `size` (the towers pass TaxaBind's).

    Runs on whatever device the batch is on, so on a GPU the resizing costs the CPU nothing.
    """
    prep = prep or Preprocessing(crop=size)
    resize = prep.resize or prep.crop
    if batch.dtype == torch.uint8:
        rgb = batch.float() / 255.0
    else:  # reflectance; NaN (nodata) -> 0
        rgb = (torch.nan_to_num(batch.float()) * REFLECTANCE_GAIN).clamp_(0, 1)
    rgb = rgb.permute(0, 3, 1, 2)
    if rgb.shape[-2:] != (resize, resize):
        rgb = F.interpolate(
            rgb, size=(resize, resize), mode="bilinear", antialias=True, align_corners=False
        )
    if resize != prep.crop:
        top = _crop_start(resize, prep.crop)
        rgb = rgb[..., top : top + prep.crop, top : top + prep.crop]
    return normalize(rgb, prep.mean, prep.std)


def patches_tensor(
    patches: Sequence[np.ndarray] | np.ndarray, size: int = IMAGE_SIZE
) -> torch.Tensor:
    """Satellite patches [H, W, 3] (reflectance float or uint8 RGB) -> [B, 3, size, size] on the CPU."""
    return patches_to_pixels(stack_patches(patches), size)


# -- open_clip <-> transformers key conversion ---------------------------------------------------
_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
_TOP = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {
    "visual.proj": "visual_projection.weight",
    "text_projection": "text_projection.weight",
}
_TOWERS = {
    "visual.transformer.resblocks": "vision_model.encoder.layers",
    "transformer.resblocks": "text_model.encoder.layers",
}
_IGNORED = {"attn_mask"}


def open_clip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip CLIP state dict -> `transformers.CLIPModel` state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _IGNORED:
            continue
        if key in _TOP:
            out[_TOP[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.T.contiguous()
        elif m := re.match(
            r"(visual\.transformer\.resblocks|transformer\.resblocks)\.(\d+)\.(.+)$", key
        ):
            tower, layer, rest = _TOWERS[m.group(1)], m.group(2), m.group(3)
            prefix = f"{tower}.{layer}"
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]  # weight or bias
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}.self_attn.{name}_proj.{kind}"] = part.contiguous()
            else:
                module, param = rest.rsplit(".", 1)
                if module not in _BLOCK:
                    raise InputError(f"open_clip key {key!r} has no transformers counterpart")
                out[f"{prefix}.{_BLOCK[module]}.{param}"] = value
        else:
            raise InputError(f"open_clip key {key!r} has no transformers counterpart")
    return out


def hf_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`transformers.CLIPModel` state dict -> open_clip CLIP state dict."""
    top = {v: k for k, v in _TOP.items()}
    transposed = {v: k for k, v in _TRANSPOSED.items()}
    towers = {v: k for k, v in _TOWERS.items()}
    block = {v: k for k, v in _BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in top:
            out[top[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.T.contiguous()
        elif m := re.match(
            r"(vision_model\.encoder\.layers|text_model\.encoder\.layers)\.(\d+)\.(.+)$", key
        ):
            prefix = f"{towers[m.group(1)]}.{m.group(2)}"
            rest = m.group(3)
            if q := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((prefix, q.group(2)), {})[q.group(1)] = value
            else:
                module, param = rest.rsplit(".", 1)
                out[f"{prefix}.{block[module]}.{param}"] = value
        else:
            raise InputError(f"transformers key {key!r} has no open_clip counterpart")
    for (prefix, kind), parts in qkv.items():
        out[f"{prefix}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def clip_config_from_open_clip(state: dict[str, torch.Tensor], model_cfg: dict | None = None):
    """A `CLIPConfig` for an open_clip state dict: shapes from the tensors, heads and activation
    from open_clip's `model_cfg` when given (defaults: 64-wide heads, GELU)."""
    from transformers import CLIPConfig

    cfg = model_cfg or {}
    vision_cfg, text_cfg = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    v_width, _, patch, _ = state["visual.conv1.weight"].shape
    v_layers = 1 + max(
        int(k.split(".")[3]) for k in state if k.startswith("visual.transformer.resblocks.")
    )
    t_layers = 1 + max(
        int(k.split(".")[2]) for k in state if k.startswith("transformer.resblocks.")
    )
    vocab, t_width = state["token_embedding.weight"].shape
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return CLIPConfig(
        projection_dim=state["visual.proj"].shape[1],
        vision_config={
            "hidden_size": v_width,
            "intermediate_size": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": v_layers,
            "num_attention_heads": v_width // vision_cfg.get("head_width", 64),
            "patch_size": patch,
            "image_size": grid * patch,
            "hidden_act": act,
            "projection_dim": state["visual.proj"].shape[1],
        },
        text_config={
            "hidden_size": t_width,
            "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": t_layers,
            "num_attention_heads": text_cfg.get("heads", t_width // 64),
            "vocab_size": vocab,
            "max_position_embeddings": state["positional_embedding"].shape[0],
            "hidden_act": act,
            "eos_token_id": vocab - 1,  # open_clip pools at the highest token id (end of text)
            "projection_dim": state["text_projection"].shape[1],
        },
    )


# -- loading ---------------------------------------------------------------------------------------
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@lru_cache(maxsize=2)
def load_clip_model(path: str | Path):
    """A `transformers.CLIPModel` from a Hugging Face CLIP folder, an open_clip folder
    (`open_clip_config.json` + weights), or a bare open_clip weights file. Cached per path:
    the image and text encoders of one checkpoint share one model."""
    import json

    from transformers import CLIPModel

    from prom3e_geo.encoders.weights import load_state_dict

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


def _from_pretrained(cls, path: Path):
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
        module,
        device: str = "cpu",
        amp: str = "bf16",
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(module, device, amp)
        self.image_size = module.config.image_size
        self.preprocessing = _checked(preprocessing, self.image_size, "satellite")
        self.batch_size = 64
        if self.device.type == "cuda":
            self.module.to(memory_format=torch.channels_last)

    def preprocess(self, raw: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Only stacks the patches: scaling and resizing happen on the device, in `forward`."""
        return stack_patches(raw)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = patches_to_pixels(batch, self.image_size, self.preprocessing)
        if self.device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.module(pixel_values=pixels).image_embeds


class ImageEncoder(Encoder):
    """Photos (file paths or PIL images) -> 512-d embeddings (the CLIP image tower)."""

    modality = "image"

    def __init__(
        self,
        clip_model,
        device: str = "cpu",
        amp: str = "bf16",
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(clip_model, device, amp)
        self.image_size = clip_model.config.vision_config.image_size
        self.preprocessing = _checked(preprocessing, self.image_size, "photo")
        self.batch_size = 64

    def preprocess(self, raw: Sequence) -> torch.Tensor:
        images = [load_photo(r) if isinstance(r, (str, Path)) else r.convert("RGB") for r in raw]
        return torch.stack([photo_tensor(img, prep=self.preprocessing) for img in images])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return _features(self.module.get_image_features(pixel_values=batch))


class TextEncoder(Encoder):
    """Taxonomic names -> 512-d embeddings (the CLIP text tower)."""

    modality = "text"

    def __init__(self, clip_model, tokenizer, device: str = "cpu", amp: str = "bf16") -> None:
        super().__init__(clip_model, device, amp)
        self.tokenizer = tokenizer
        self.context = clip_model.config.text_config.max_position_embeddings

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
        return _features(self.module.get_text_features(**batch))


def _checked(prep: Preprocessing | None, image_size: int, tower: str) -> Preprocessing:
    """TaxaBind's preprocessing by default; a given one must crop to the tower's input size."""
    if prep is None:
        return taxabind_preprocessing(image_size)
    if prep.crop != image_size:
        raise InputError(
            f"the {tower} tower takes {image_size} px inputs; its preprocessing crops to {prep.crop}"
        )
    return prep


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


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


def fetch_clip_tokenizer():
    """The standard CLIP BPE tokenizer files, from `CLIP_TOKENIZER_REPO` (or the hub cache)."""
    from prom3e_geo.hub import HubRef, download_snapshot

    return download_snapshot(HubRef(CLIP_TOKENIZER_REPO), TOKENIZER_FILES, "CLIP tokenizer")


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError):
        raise InputError(
            f"no usable CLIP tokenizer (vocab.json + merges.txt) in {folder}"
        ) from None
