"""Arrow numbers and flags as numpy arrays, read from the arrays' buffers.

pyarrow's `Array.to_numpy` goes through its pandas converter, which imports pandas on first use
(so does making a scalar from a Python value, as `fill_null(x, 0)` does): 0.2 s of the 1.3 s a
small diversity run takes, for a library the reader never uses. Fixed-width numbers and
booleans are laid out plainly in Arrow's buffers (values, plus a validity bitmap when there are
nulls), so they are read here directly; indices for `take` are made from numpy the same way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMBER_TYPES = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def _one_array(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks()
    return array


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """Arrow's little-endian bitmap as booleans."""
    packed = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little")[offset : offset + length].view(bool)


def valid(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where the value is not null."""
    array = _one_array(array)
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    if array.null_count == len(array) or array.buffers()[0] is None:
        return np.zeros(len(array), dtype=bool)
    return _bits(array.buffers()[0], array.offset, len(array))


def numbers(array: pa.Array | pa.ChunkedArray, fill: float | int) -> np.ndarray:
    """The values of an integer or floating array, nulls replaced by `fill` (a copy only where
    there are nulls)."""
    array = _one_array(array)
    dtype = _NUMBER_TYPES.get(array.type)
    if dtype is None:
        raise TypeError(f"not a fixed-width number type: {array.type}")
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    data = array.buffers()[1]
    values = np.frombuffer(data, dtype=dtype, count=array.offset + len(array))[array.offset :]
    if array.null_count:
        values = values.copy()
        values[~valid(array)] = fill
    return values


def flags(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean array as numpy booleans; nulls count as False."""
    array = _one_array(array)
    if not pa.types.is_boolean(array.type):
        raise TypeError(f"not a boolean array: {array.type}")
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    values = _bits(array.buffers()[1], array.offset, len(array)).copy()
    if array.null_count:
        values &= valid(array)
    return values


def indices(values: np.ndarray) -> pa.Array:
    """Integer positions as an Arrow int64 array (for `take`), sharing numpy's buffer."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])
