"""Audio encoder (optional extra `audio`): the CLAP audio tower through `transformers`.

Recordings are read with soundfile (WAV, FLAC, OGG, ...), mixed down to mono, resampled to
48 kHz with a polyphase filter, and turned into CLAP features by `ClapFeatureExtractor`: 10 s,
repeat-padding for short clips, the checkpoint's own truncation for long ones ('fusion' when the
model was trained with fusion). The extractor's random crops are drawn from a fixed seed, so a
recording always gives the same embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import torch

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError

SAMPLE_RATE = 48_000
MAX_SECONDS = 10


@dataclass(frozen=True)
class AudioPreprocessing:
    """Resampling rate, clip length, padding of short clips and truncation of long ones (None:
    the extractor's own, which follows the checkpoint); TaxaBind's config names all four."""

    sample_rate: int = SAMPLE_RATE
    max_seconds: float = MAX_SECONDS
    padding: str = "repeatpad"
    truncation: str | None = None


def load_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform at `rate` Hz."""
    import soundfile
    from scipy.signal import resample_poly

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio {path} does not exist")
    try:
        data, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise InputError(f"audio {path} cannot be decoded: {exc}") from None
    if data.size == 0:
        raise InputError(f"audio {path} is empty")
    mono = data.mean(axis=1)
    if source_rate != rate:
        g = gcd(source_rate, rate)
        mono = resample_poly(mono, rate // g, source_rate // g).astype(np.float32)
    return mono


class AudioEncoder(Encoder):
    """Recordings (paths or 48 kHz mono arrays) -> 512-d embeddings."""

    modality = "audio"

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> AudioEncoder:
        from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

        path = Path(path)
        try:
            model = ClapAudioModelWithProjection.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot load a CLAP audio model from {path}: {' '.join(str(exc).split())[:200]}"
            ) from None
        if (path / "preprocessor_config.json").is_file():
            extractor = ClapFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        else:
            extractor = ClapFeatureExtractor(
                feature_size=model.config.num_mel_bins,
                sampling_rate=SAMPLE_RATE,
                max_length_s=MAX_SECONDS,
                padding="repeatpad",
                truncation="fusion" if model.config.enable_fusion else "rand_trunc",
            )
        return cls(model, extractor, device)

    def __init__(self, module, extractor, device: str = "cpu", amp: str = "bf16") -> None:
        super().__init__(module, device, amp)
        self.extractor = extractor
        self.preprocessing = AudioPreprocessing()
        self.batch_size = 16

    def preprocess(self, raw: Sequence[str | Path | np.ndarray]) -> dict[str, torch.Tensor]:
        """Paths are decoded and resampled; arrays are taken as mono at the sample rate."""
        prep = self.preprocessing
        waves = [
            load_audio(r, prep.sample_rate)
            if isinstance(r, (str, Path))
            else np.asarray(r, np.float32)
            for r in raw
        ]
        state = np.random.get_state()
        np.random.seed(0)  # the extractor crops long clips at random: make it repeatable
        try:
            features = self.extractor(
                waves,
                sampling_rate=prep.sample_rate,
                max_length=int(prep.max_seconds * prep.sample_rate),
                padding=prep.padding,
                truncation=prep.truncation,
                return_tensors="pt",
            )
        finally:
            np.random.set_state(state)
        return {"input_features": features["input_features"], "is_longer": features["is_longer"]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(**batch).audio_embeds
