"""Checking what a browser sends before it reaches an encoder.

An upload is taken only if its first bytes say it is a photo (any format PIL recognises from
its header and the image tower reads: JPEG, PNG, WebP, GIF, BMP, TIFF) or a recording (WAV,
FLAC, Ogg, MP3), and only up to a size limit. Its kind decides the suffix it is saved under
(never the name the browser sent), and its name becomes a safe file stem: letters, digits,
`_` and `-`. The file itself is then decoded in full by the tower, which refuses a truncated or
corrupt one with a one-line reason.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from prom3e_geo.errors import InputError

IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                 "TIFF": ".tif"}  # fmt: skip
STEM_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
MAX_STEM = 64


@dataclass(frozen=True)
class Upload:
    """A checked upload: its bytes, a safe stem and the suffix of its detected kind."""

    data: bytes
    stem: str
    suffix: str

    @property
    def filename(self) -> str:
        return f"{self.stem}{self.suffix}"


def check_upload(data: bytes, name: str, limit: int) -> Upload:
    """An `Upload`, or an InputError saying why the bytes are refused."""
    if not data:
        raise InputError("the upload is empty")
    if len(data) > limit:
        raise InputError(f"the upload is larger than the limit of {limit / 2**20:.1f} MiB")
    suffix = image_suffix(data) or audio_suffix(data)
    if suffix is None:
        raise InputError(
            "the upload is neither a photo (JPEG, PNG, WebP, GIF, BMP, TIFF) nor a recording "
            "(WAV, FLAC, Ogg, MP3)"
        )
    return Upload(data, safe_stem(name), suffix)


def safe_stem(name: str) -> str:
    """The stem of a browser's file name (any folders and the suffix dropped) in safe
    characters; `upload` when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = STEM_CHARS.sub("_", stem).strip("_-")[:MAX_STEM]
    return stem or "upload"


def image_suffix(data: bytes) -> str | None:
    """The suffix of a photo format PIL recognises from the header, else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            return IMAGE_FORMATS.get(img.format or "")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def audio_suffix(data: bytes) -> str | None:
    """The suffix of a recording by its magic bytes (WAV, FLAC, Ogg, MP3), else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"OggS":
        return ".ogg"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return ".mp3"
    return None
