"""Novelty and trust: where a map's context lies outside what the model was trained on.

A `NoveltyReference` holds in-distribution embeddings (L2-normalised, rows paired across
modalities: row i of every modality is one sample) and travels with the model: the demo world
ships one, `prom3e-geo weights reference` builds one for any preset from an observation file.

* **novelty** of modality m for a sample: the mean Euclidean distance of its embedding to the
  `k` nearest reference embeddings, expressed as the share of reference samples whose own
  leave-one-out distance is lower (0: as typical as the training data, 1: farther than every
  reference sample). The **joint** novelty of several modalities takes the largest of their
  percentiles and of the percentile of their concatenation (which sees unusual combinations of
  familiar parts), and expresses it as the share of reference samples whose own such maximum is
  lower: a cell is novel when any of its context, or its combination, is; calibrated so that it
  too is uniform over in-distribution samples.
* **trust** (read as "distrust": high where the species map should not be believed): the
  percentile, among the reference samples, of the expected-error percentile, or of 1 + the
  joint novelty where that is above `NOVEL` (0.95). Within the training data it orders cells by
  the calibrated expected error; every cell outside it ranks above every familiar cell.

A reference built from an observation file also holds `place`: where its samples were observed
(points on the unit sphere), so that a cell far from every observation is novel even when an
encoder maps its surroundings onto familiar embeddings (the demo's location head, trained on the
contiguous USA only, maps half of Europe into them). Maps use it wherever the reference has it.

The search is exact and batched (unit vectors, one [batch, R] matrix product at a time), so memory
is bounded by `batch x R` floats whatever the number of cells.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.errors import InputError, WeightsError
from prom3e_geo.grid import Grid
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.stored import stored_inputs
from prom3e_geo.model.prom3e import MODALITIES, ProM3E
from prom3e_geo.stores.embeddings import valid_for

K_NEAREST = 10
SEARCH_BATCH = 4096
KIND = "prom3e-geo novelty reference"
NOVEL = 0.95  # joint novelty above which a sample counts as outside the training data
PLACE = "place"  # the reference's optional pseudo-modality: where its samples were observed


Vectors = torch.Tensor | np.ndarray  # [N, D] rows of one embedding


def _unit(values: Vectors) -> torch.Tensor:
    return F.normalize(torch.as_tensor(np.asarray(values, dtype=np.float32)), dim=-1)


def place_vectors(lon: np.ndarray, lat: np.ndarray) -> torch.Tensor:
    """[N, 3] points on the unit sphere for lon/lat in degrees: the Euclidean distance between
    two is the chord, a monotone function of their great-circle distance."""
    lon, lat = np.radians(np.ravel(lon)), np.radians(np.ravel(lat))
    xyz = np.c_[np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]
    return torch.from_numpy(xyz.astype(np.float32))


def _keys(modalities: Sequence[str]) -> list[str]:
    """The searches behind a joint novelty: each modality, and (for several) their concatenation."""
    return list(modalities) if len(modalities) == 1 else [*modalities, "+".join(modalities)]


def _trust_statistic(joint: np.ndarray, error_percentile: np.ndarray) -> np.ndarray:
    """The expected-error percentile; novel samples (joint novelty above `NOVEL`) rank above
    every familiar one, in order of their novelty."""
    return np.where(joint > NOVEL, 1 + joint, error_percentile)


def _share_below(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of `sorted_reference` strictly below each value (a percentile in [0, 1])."""
    return np.searchsorted(sorted_reference, values, side="left") / sorted_reference.size


@dataclass
class NoveltyReference:
    """In-distribution embeddings by modality ([R, D] each, paired rows) and where they came from
    (`origin`: free-form provenance, recorded in the maps made with it)."""

    embeddings: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)
    k: int = K_NEAREST
    _cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        sizes = {m: int(v.shape[0]) for m, v in self.embeddings.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise InputError(f"a novelty reference needs paired rows per modality, got {sizes}")
        if next(iter(sizes.values())) <= self.k:
            raise InputError(f"a novelty reference needs more than k={self.k} samples")
        self.embeddings = {m: _unit(v) for m, v in self.embeddings.items()}

    @property
    def modalities(self) -> list[str]:
        return list(self.embeddings)

    @property
    def size(self) -> int:
        return int(next(iter(self.embeddings.values())).shape[0])

    def _matrix(self, key: str) -> torch.Tensor:
        """Reference rows for a key: a modality, or `a+b` for the modalities' concatenation."""
        names = key.split("+")
        self._check(names)
        if len(names) == 1:
            return self.embeddings[key]
        return _unit(torch.cat([self.embeddings[m] for m in names], dim=1))

    def distances(self, key: str, values: Vectors, leave_one_out: bool = False) -> np.ndarray:
        """Mean distance of each row of `values` ([N, D]) to its k nearest reference rows of
        `key` (see `_matrix`); `leave_one_out` (values = the reference itself) skips each row's
        own."""
        ref = self._matrix(key)
        x = _unit(values)
        k = self.k + 1 if leave_one_out else self.k
        out = np.empty(x.shape[0], dtype=np.float32)
        for start in range(0, x.shape[0], SEARCH_BATCH):
            part = x[start : start + SEARCH_BATCH]
            near = (part @ ref.T).topk(k, dim=1).values
            if leave_one_out:
                near = near[:, 1:]
            dist = torch.sqrt(torch.clamp(2 - 2 * near, min=0))
            out[start : start + part.shape[0]] = dist.mean(1).numpy()
        return out

    def _own(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The reference's own leave-one-out distances of `key`: (in row order, sorted)."""
        if key not in self._cache:
            own = self.distances(key, self._matrix(key), leave_one_out=True)
            self._cache[key] = (own, np.sort(own))
        return self._cache[key]

    def percentile(self, key: str, values: Vectors) -> np.ndarray:
        """Novelty of one key: the share of reference samples less far out than each row."""
        return _share_below(self._own(key)[1], self.distances(key, values))

    def _own_statistic(self, modalities: Sequence[str]) -> np.ndarray:
        """Each reference sample's joint statistic (row order): its largest own percentile."""
        keys = _keys(modalities)
        own = [_share_below(self._own(k)[1], self._own(k)[0]) for k in keys]
        return np.asarray(np.max(own, axis=0))

    def scores(self, values: Mapping[str, Vectors]) -> dict[str, np.ndarray]:
        """Per-modality novelty of `values` (modality -> [N, D]) and, under `joint`, their
        calibrated combination (module docstring)."""
        modalities = list(values)
        self._check(modalities)
        out = {m: self.percentile(m, values[m]) for m in modalities}
        stat = out[modalities[0]] if len(modalities) == 1 else None
        if stat is None:
            together = torch.cat([_unit(values[m]) for m in modalities], dim=1)
            combined = self.percentile("+".join(modalities), together)
            stat = np.max([*(out[m] for m in modalities), combined], axis=0)
        out["joint"] = _share_below(np.sort(self._own_statistic(modalities)), stat)
        return out

    def trust(
        self,
        joint: np.ndarray,
        errors: np.ndarray,
        modalities: Sequence[str],
        expected_error: Callable[[Mapping[str, torch.Tensor]], np.ndarray],
    ) -> np.ndarray:
        """The trust ("distrust") score of samples with joint novelty `joint` and expected
        errors `errors`; `expected_error` computes the expected error of the reference samples
        from their embeddings of `modalities` (module docstring)."""
        reference_errors = np.asarray(
            expected_error({m: self.embeddings[m] for m in modalities}), dtype=np.float64
        )
        sorted_errors = np.sort(reference_errors)
        own = self._own_statistic(modalities)
        own_joint = _share_below(np.sort(own), own)
        reference = _trust_statistic(own_joint, _share_below(sorted_errors, reference_errors))
        stat = _trust_statistic(joint, _share_below(sorted_errors, np.asarray(errors)))
        return _share_below(np.sort(reference), stat)

    def _check(self, modalities: Sequence[str]) -> None:
        missing = [m for m in modalities if m not in self.embeddings]
        if missing:
            raise InputError(
                f"the novelty reference has no {', '.join(missing)} embeddings "
                f"(it has {', '.join(self.embeddings)})"
            )

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One safetensors file: float16 embeddings, the origin and k in its metadata."""
        from safetensors.torch import save_file

        tensors = {m: v.to(torch.float16).contiguous() for m, v in self.embeddings.items()}
        meta = {"kind": KIND, "k": str(self.k), "origin": json.dumps(self.origin, sort_keys=True)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path, model_sha256: str | None = None) -> NoveltyReference:
        """A saved reference; with `model_sha256`, refused unless built for that model."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"novelty reference {path} cannot be read: {exc}") from None
        if meta.get("kind") != KIND:
            raise WeightsError(f"{path} is not a {KIND}")
        origin = json.loads(meta.get("origin", "{}"))
        if model_sha256 is not None and origin.get("model_sha256") not in (None, model_sha256):
            raise WeightsError(f"novelty reference {path} was built for another model")
        return cls(tensors, origin, int(meta.get("k", K_NEAREST)))


def novelty_layers(
    ds: xr.Dataset,
    grid: Grid,
    stored: Sequence[str],
    context: Sequence[str] | None,
    reference: NoveltyReference,
    model: ProM3E | None = None,
    expected_error: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str = "float32",
    batch_size: int = 1024,
) -> LayerSet:
    """From an embedding store: `novelty` (joint) and `novelty_<m>` per context modality or,
    with `model` and `expected_error` ([N, E] log-variances -> [N] errors), the `trust` band;
    `context` defaults to the store's own (`stored`)."""
    wanted = list(context) if context else list(stored)
    missing = [m for m in wanted if m not in stored]
    if missing:
        raise InputError(
            f"the store has no {', '.join(missing)} embeddings (its context is {'+'.join(stored)})"
        )
    reference._check(wanted)
    trust = expected_error is not None
    if trust and model is None:
        raise InputError("the trust layer needs the store's model")
    valid = valid_for(ds, wanted)
    dim = int(ds[f"ctx_{wanted[0]}"].shape[-1])
    shown = [*wanted, PLACE] if PLACE in reference.modalities else wanted
    names = ["trust"] if trust else ["novelty", *(f"novelty_{m}" for m in shown)]
    bands = {n: np.full(grid.shape, np.nan, dtype=np.float32) for n in names}

    def errors(x: torch.Tensor) -> np.ndarray:
        assert model is not None and expected_error is not None  # trust: checked above
        parts = [x[i : i + batch_size].float() for i in range(0, x.shape[0], batch_size)]
        logvar = [infer_cells(model, p, wanted, precision).logvar for p in parts]
        return expected_error(torch.cat(logvar).float().numpy())

    def reference_errors(embeddings: Mapping[str, torch.Tensor]) -> np.ndarray:
        x = torch.zeros(reference.size, len(MODALITIES), dim)
        for m, value in embeddings.items():
            if m in MODALITIES:  # not the place
                x[:, MODALITIES.index(m)] = value
        return errors(x)

    lon, lat = grid.lonlat()
    places = PLACE in reference.modalities
    for rows, ok, x in stored_inputs(ds, valid, wanted, dim):
        values = {m: x[:, MODALITIES.index(m)].float() for m in wanted}
        if places:
            values[PLACE] = place_vectors(lon[rows][ok], lat[rows][ok])
        scores = reference.scores(values)
        if trust:
            bands["trust"][rows][ok] = reference.trust(
                scores["joint"], errors(x), list(values), reference_errors
            )
            continue
        bands["novelty"][rows][ok] = scores["joint"]
        for m in values:
            bands[f"novelty_{m}"][rows][ok] = scores[m]
    text = "+".join(shown)
    unit = "share of in-distribution reference samples below (0-1)"
    docs = {
        "novelty": f"joint novelty of the context {text}: percentile of its k-NN distance "
        "among the training data's own",
        "trust": f"where to distrust the species map (high: distrust), context {text}: "
        "expected-error percentile, novel cells above every familiar one",
        **{
            f"novelty_{m}": f"novelty of the {m} embedding (k-NN distance percentile)"
            for m in wanted
        },
        f"novelty_{PLACE}": "novelty of the place: distance to the reference's observations "
        "(k-NN percentile)",
    }
    origin = "; ".join(f"{k}: {v}" for k, v in sorted(reference.origin.items()))
    params: dict[str, object] = {
        "layer": "trust" if trust else "novelty",
        "context": text,
        "k_nearest": reference.k,
        "reference": origin or "unrecorded",
        "reference_rows": reference.size,
    }
    return LayerSet(
        bands, {n: docs[n] for n in names}, params, grid, units=dict.fromkeys(names, unit)
    )
