"""Audio encoder (optional extra `audio`): the CLAP audio tower through `transformers`.

Recordings are read with soundfile (WAV, FLAC, OGG, ...), mixed down to mono, resampled to
48 kHz with a polyphase filter, and turned into CLAP features by `ClapFeatureExtractor`: 10 s,
repeat-padding for short clips. The extractor's settings are those of the tower's repository
when it has a `preprocessor_config.json`; otherwise those of the ClapProcessor repository the
preset names (TaxaBind's `get_audio_processor`), and by default those of
`laion/clap-htsat-unfused`, the processor TaxaBind's code (rshf `TaxaBind.process_audio`) builds
for its released audio tower, which ships none (`LAION_UNFUSED`: mel range 50-14,000 Hz).

Truncation of clips over the length follows the preset (`audio_truncation`) as upstream does:
'fusion' needs a tower trained with fusion (refused otherwise, where upstream would crash),
'rand_trunc' takes a random 10 s, and any other value (TaxaBind's `true`) accepts no longer clip
(refused with a reason, where upstream raises). Without a preset value the extractor's own
applies ('fusion' for a fused tower). Random crops are drawn from a fixed seed, so a recording
always gives the same embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError

if TYPE_CHECKING:  # transformers is imported when the tower is loaded
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

SAMPLE_RATE = 48_000
MAX_SECONDS = 10
# laion/clap-htsat-unfused's preprocessor_config.json (541 bytes, commit 0e991a8 "Upload
# processor"): the feature settings of the ClapProcessor rshf builds for TaxaBind's audio tower
LAION_UNFUSED: dict[str, Any] = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "padding_value": 0.0,
    "return_attention_mask": False,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "top_db": None,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}
TRUNCATIONS = ("fusion", "rand_trunc")  # what ClapFeatureExtractor implements for long clips


@dataclass(frozen=True)
class AudioPreprocessing:
    """Resampling rate, clip length, padding of short clips, truncation of long ones (None: the
    extractor's own; TaxaBind's config names all four) and the ClapProcessor repository whose
    feature settings apply when the tower has none (None: `LAION_UNFUSED`)."""

    sample_rate: int = SAMPLE_RATE
    max_seconds: float = MAX_SECONDS
    padding: str = "repeatpad"
    truncation: str | bool | None = None
    processor: str | None = None


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
    mono = np.asarray(data.mean(axis=1), dtype=np.float32)
    if source_rate != rate:
        g = gcd(source_rate, rate)
        mono = np.asarray(resample_poly(mono, rate // g, source_rate // g), dtype=np.float32)
    return mono


class AudioEncoder(Encoder):
    """Recordings (paths or 48 kHz mono arrays) -> 512-d embeddings."""

    modality = "audio"

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "cpu",
        preprocessing: AudioPreprocessing | None = None,
    ) -> AudioEncoder:
        from transformers import ClapAudioModelWithProjection

        path = Path(path)
        prep = preprocessing or AudioPreprocessing()
        try:
            model = ClapAudioModelWithProjection.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot load a CLAP audio model from {path}: {' '.join(str(exc).split())[:200]}"
            ) from None
        if prep.truncation == "fusion" and not model.config.enable_fusion:
            raise InputError(
                f"audio tower {path.name}: audio_truncation 'fusion' needs a CLAP tower trained "
                "with fusion (enable_fusion: true in its config.json), and this one was not"
            )
        extractor = feature_extractor(path, prep, model.config.enable_fusion)
        return cls(model, extractor, device, preprocessing=prep)

    def __init__(
        self,
        module: ClapAudioModelWithProjection,
        extractor: ClapFeatureExtractor,
        device: str = "cpu",
        amp: str = "bf16",
        preprocessing: AudioPreprocessing | None = None,
    ) -> None:
        super().__init__(module, device, amp)
        self.clap, self.extractor = module, extractor
        self.preprocessing = preprocessing or AudioPreprocessing()
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
        max_length = int(prep.max_seconds * prep.sample_rate)
        truncation = prep.truncation if prep.truncation is not None else self.extractor.truncation
        if truncation not in TRUNCATIONS:
            for wave, item in zip(waves, raw, strict=True):
                if wave.size > max_length:
                    what = f"recording {item}" if isinstance(item, (str, Path)) else "a recording"
                    raise InputError(
                        f"{what} lasts {wave.size / prep.sample_rate:.1f} s; with "
                        f"audio_truncation {truncation!r} the audio tower takes at most "
                        f"{prep.max_seconds:g} s (trim it)"
                    )
        state = np.random.get_state()
        np.random.seed(0)  # the extractor crops long clips at random: make it repeatable
        try:
            features = self.extractor(
                waves,
                sampling_rate=prep.sample_rate,
                max_length=max_length,
                padding=prep.padding,
                # TaxaBind's `true` cuts nothing: longer clips were refused above
                truncation=truncation if isinstance(truncation, str) else None,
                return_tensors="pt",
            )
        finally:
            np.random.set_state(state)
        return {"input_features": features["input_features"], "is_longer": features["is_longer"]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embeds: torch.Tensor = self.clap(**batch).audio_embeds
        return embeds


def feature_extractor(
    tower: Path, prep: AudioPreprocessing, fused: bool = False, hint: str | None = None
) -> ClapFeatureExtractor:
    """The tower's own `preprocessor_config.json`, else the named ClapProcessor repository's
    (a folder, or fetched from the hub), else `LAION_UNFUSED` with the truncation the tower was
    trained for (see the module docstring)."""
    from transformers import ClapFeatureExtractor

    folder = tower if (tower / "preprocessor_config.json").is_file() else None
    if folder is None and prep.processor:
        from prom3e_geo.hub import download_snapshot, parse_hub_ref

        ref = parse_hub_ref(prep.processor)
        if ref is None:
            folder = Path(prep.processor)
        else:
            folder = download_snapshot(
                ref, ["preprocessor_config.json"], "audio processor", hint
            ).path
        if not (folder / "preprocessor_config.json").is_file():
            raise InputError(f"audio processor {prep.processor} has no preprocessor_config.json")
    if folder is None:
        return ClapFeatureExtractor(
            **{**LAION_UNFUSED, "truncation": "fusion" if fused else "rand_trunc"}
        )
    extractor: ClapFeatureExtractor = ClapFeatureExtractor.from_pretrained(
        str(folder), local_files_only=True
    )
    return extractor
