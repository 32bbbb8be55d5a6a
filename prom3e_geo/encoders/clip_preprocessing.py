"""CLIP preprocessing: photos and satellite patches -> normalised pixel batches (TaxaBind's).

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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from prom3e_geo.errors import InputError

if TYPE_CHECKING:  # PIL is imported when a photo is read
    from PIL.Image import Image

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
def load_photo(path: str | Path) -> Image:
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
                with Image.open(path) as opened:
                    opened.load()
                    return ImageOps.exif_transpose(opened).convert("RGB")
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


def photo_tensor(
    image: Image, size: int = IMAGE_SIZE, prep: Preprocessing | None = None
) -> torch.Tensor:
    """[3, crop, crop] by `prep` (default: the shorter side to `size`): the photo squashed to
    resize x resize (bilinear) or, with `resize` None, its shorter side resized to the crop
    (bicubic); centre-cropped and normalised. The towers pass TaxaBind's."""
    from PIL.Image import Resampling

    prep = prep or Preprocessing(crop=size)
    size = prep.crop
    if prep.resize:
        resized = image.resize((prep.resize, prep.resize), Resampling.BILINEAR)
    else:
        w, h = image.size
        scale = size / min(w, h)
        resized = image.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Resampling.BICUBIC
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
