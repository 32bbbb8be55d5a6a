"""All-paired embedding datasets for stage-2 training: one 512-d vector per modality per sample.

Formats (modality names as in the official data: `image, sat, loc, env, text` and `sound` or
`audio`; a modality that is missing, or all zeros as audio is in the iNaturalist file, is absent):

* **Parquet**: one column per modality holding lists (or fixed-size lists) of floats;
* **NPY dict**: the official `np.save(dict)` file. It is a pickle, so it is read with an
  unpickler that only admits numpy arrays and dtypes (no code execution); `.npz` also works;
* **Zarr**: a group with one [N, D] array per modality.

Rows are L2-normalised (zero vectors stay zero). `split` makes a seeded train/validation split.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prom3e_geo.errors import InputError
from prom3e_geo.model.prom3e import MODALITIES

ALIASES = {"sound": "audio"}


@dataclass
class PairedEmbeddings:
    """values [N, M, D] float32, L2-normalised; `present` = modality indices with data."""

    values: np.ndarray
    present: list[int]
    name: str

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def split(self, val_fraction: float, seed: int) -> tuple[PairedEmbeddings, PairedEmbeddings]:
        """Seeded random split into (train, validation)."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = int(round(len(self) * val_fraction))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        return (
            PairedEmbeddings(self.values[train], self.present, f"{self.name}[train]"),
            PairedEmbeddings(self.values[val], self.present, f"{self.name}[val]"),
        )


def from_arrays(arrays: dict[str, np.ndarray], name: str) -> PairedEmbeddings:
    """Stack per-modality [N, D] arrays (keyed by modality name) into PairedEmbeddings."""
    named = {ALIASES.get(k, k): np.asarray(v) for k, v in arrays.items()}
    unknown = sorted(set(named) - set(MODALITIES))
    if unknown:
        raise InputError(
            f"{name}: unknown modalities {unknown} (expected {', '.join(MODALITIES)} or sound)"
        )
    if not named:
        raise InputError(f"{name}: no modality arrays found")
    shapes = {k: v.shape for k, v in named.items()}
    if any(len(s) != 2 for s in shapes.values()) or len({s for s in shapes.values()}) != 1:
        raise InputError(
            f"{name}: every modality must be an [N, D] array of one shape; got {shapes}"
        )
    n, dim = next(iter(shapes.values()))
    values = np.zeros((n, len(MODALITIES), dim), dtype=np.float32)
    present = []
    for i, modality in enumerate(MODALITIES):
        if modality in named:
            block = named[modality].astype(np.float32)
            if not np.isfinite(block).all():
                raise InputError(f"{name}: modality {modality} has non-finite values")
            if np.any(block):
                values[:, i] = block
                present.append(i)
    if len(present) < 2:
        raise InputError(f"{name}: needs at least two modalities with data, found {len(present)}")
    norms = np.linalg.norm(values, axis=-1, keepdims=True)
    np.divide(values, norms, out=values, where=norms > 0)
    return PairedEmbeddings(values, present, name)


def load_embeddings(path: str | Path) -> PairedEmbeddings:
    """Read a dataset in any supported format (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"training data {path} does not exist")
    if path.is_dir():
        return from_arrays(_read_zarr(path), path.name)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return from_arrays(_read_parquet(path), path.name)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return from_arrays({k: data[k] for k in data.files}, path.name)
        except (ValueError, OSError) as exc:
            raise InputError(f"training data {path} cannot be read as .npz: {exc}") from None
    if suffix == ".npy":
        return from_arrays(_read_npy_dict(path), path.name)
    raise InputError(
        f"training data {path}: unknown format (use .parquet, .npy, .npz or a .zarr folder)"
    )


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"training data {path} is not valid Parquet: {exc}") from None
    arrays = {}
    for name in table.column_names:
        if ALIASES.get(name, name) not in MODALITIES:
            continue  # ids, labels and other columns
        column = table.column(name).combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)):
            raise InputError(f"{path}: column {name} must hold lists of floats")
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        if flat.size % len(column):
            raise InputError(f"{path}: column {name} has vectors of different lengths")
        arrays[name] = flat.reshape(len(column), -1)
    return arrays


def _read_zarr(path: Path) -> dict[str, np.ndarray]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is not a group
        raise InputError(f"training data {path} is not a Zarr group: {exc}") from None
    return {name: np.asarray(array[:]) for name, array in group.arrays()}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and plain containers; refuses anything that runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy_dict(path: Path) -> dict[str, np.ndarray]:
    """An .npy file holding either a dict of arrays (pickled) or a plain [N, M, D] array."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _fortran, dtype = reader(fh)
        except ValueError as exc:
            raise InputError(f"training data {path} is not an .npy file: {exc}") from None
        if dtype != np.dtype(object):
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
            if array.ndim != 3 or array.shape[1] not in (5, 6):
                raise InputError(
                    f"training data {path}: expected a dict or an [N, 6, D] array, "
                    f"got {array.shape}"
                )
            return {MODALITIES[i]: array[:, i] for i in range(array.shape[1])}
        try:
            obj = _NumpyOnlyUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
            raise InputError(
                f"training data {path}: unsafe or corrupt pickle refused ({exc})"
            ) from None
    data = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(data, dict):
        raise InputError(
            f"training data {path}: expected a dict of arrays, got {type(data).__name__}"
        )
    return data
