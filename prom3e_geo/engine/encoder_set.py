"""A pipeline's encoders by modality, the ones not needed yet built on first use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prom3e_geo.encoders.base import Encoder


class EncoderSet(Mapping[str, Encoder]):
    """A pipeline's encoders by modality: those built already, and the others built from their
    spec on first use (with the preset's preprocessing and the run's autocast), so a map whose
    queries are photos never loads the text tower."""

    def __init__(
        self,
        built: Mapping[str, Encoder],
        specs: Mapping[str, str],
        device: str,
        preprocessing: Mapping[str, object],
        hint: str | None = None,
    ) -> None:
        self.built = dict(built)
        self.specs = {m: s for m, s in specs.items() if m not in self.built}
        self.device, self.preprocessing = device, dict(preprocessing)
        self.amp: str | None = None
        self.hint = hint

    def __getitem__(self, modality: str) -> Encoder:
        if modality not in self.built:
            if modality not in self.specs:
                raise KeyError(modality)
            from prom3e_geo.encoders import build_encoder

            encoder = build_encoder(
                modality,
                self.specs[modality],
                self.device,
                self.preprocessing.get(modality),
                self.hint,
            )
            self.built[modality] = self._with_amp(encoder)
        return self.built[modality]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.built, **self.specs})

    def __len__(self) -> int:
        return len({**self.built, **self.specs})

    def set_amp(self, amp: str) -> None:
        """The autocast of every tower, built now or later (the run's resolved precision)."""
        self.amp = amp
        for encoder in self.built.values():
            self._with_amp(encoder)

    def _with_amp(self, encoder: Encoder) -> Encoder:
        if self.amp is not None:
            encoder.amp = self.amp
        return encoder

    def origins(self) -> dict[str, str]:
        """modality -> ORG/NAME@COMMIT of the built encoders whose weights came from the hub."""
        return {m: e.origin for m, e in self.built.items() if e.origin}

    def origin(self, modality: str) -> str | None:
        """ORG/NAME@COMMIT of a modality's hub weights, fetched but not loaded when not built
        yet (a store records its context encoders without loading them twice)."""
        if modality in self.built:
            return self.built[modality].origin
        if modality not in self.specs:
            return None
        from prom3e_geo.encoders.registry import fetch_encoder

        fetched = fetch_encoder(modality, self.specs[modality], self.hint)
        return fetched.origin if fetched else None
