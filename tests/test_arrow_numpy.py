"""Arrow arrays read from their buffers (observations/arrow_numpy.py) equal pyarrow's own
`to_numpy`, for every number type, with nulls, sliced (an offset into the buffers) and chunked."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from prom3e_geo.observations import arrow_numpy

TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.float32(),
         pa.float64()]  # fmt: skip


def _expected(array: pa.Array | pa.ChunkedArray, fill: float) -> np.ndarray:
    filled = array.fill_null(pa.scalar(fill, array.type))
    return np.asarray(filled.to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("kind", TYPES, ids=str)
@pytest.mark.parametrize("nulls", [0.0, 0.3, 1.0])
def test_numbers_equal_pyarrows_own(kind, nulls):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 100, 1001).astype(kind.to_pandas_dtype())
    mask = rng.random(1001) < nulls
    array = pa.array(raw, type=kind, mask=mask)
    for view in (array, array.slice(3, 517), array.slice(1000), array.slice(5, 0),
                 pa.chunked_array([array.slice(0, 10), array.slice(13, 50)], type=kind)):  # fmt: skip
        got = arrow_numpy.numbers(view, 7)
        assert got.dtype == np.dtype(kind.to_pandas_dtype())
        np.testing.assert_array_equal(got, _expected(view, 7))
        np.testing.assert_array_equal(
            arrow_numpy.valid(view), ~np.asarray(view.is_null().to_numpy(zero_copy_only=False))
        )


@pytest.mark.parametrize("nulls", [0.0, 0.3, 1.0])
def test_flags_equal_pyarrows_own_with_nulls_as_false(nulls):
    rng = np.random.default_rng(1)
    array = pa.array(rng.random(999) < 0.5, mask=rng.random(999) < nulls)
    for view in (array, array.slice(5, 700), array.slice(998), array.slice(9, 0),
                 pa.chunked_array([array.slice(1, 9), array.slice(17, 30)])):  # fmt: skip
        np.testing.assert_array_equal(arrow_numpy.flags(view), _expected(view, False))


def test_other_types_are_refused():
    with pytest.raises(TypeError, match="not a fixed-width number type"):
        arrow_numpy.numbers(pa.array(["1"]), 0)
    with pytest.raises(TypeError, match="not a boolean array"):
        arrow_numpy.flags(pa.array([1]))


def test_indices_take_what_pyarrows_own_arrays_take():
    names = pa.array(["a", "b", "c", None])
    for positions in ([], [2, 0, 2], [3, 1]):
        made = arrow_numpy.indices(np.array(positions, dtype=np.intp))
        assert made.type == pa.int64()
        assert names.take(made).equals(names.take(pa.array(positions, pa.int64())))
