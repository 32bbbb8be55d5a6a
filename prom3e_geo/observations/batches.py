"""Arrow record batches streamed from observation text files (plain, `.gz`, zip) and Parquet."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from prom3e_geo.errors import InputError
from prom3e_geo.observations.files import DAMAGED, TextLayout, damaged, open_member

TEXT_BLOCK_BYTES = 1 << 20  # pyarrow reads about 37 blocks ahead: its memory is ~37 x this
TEXT_BATCH_ROWS = 250_000  # parsed blocks are joined into batches of this many rows
PARQUET_BATCH_ROWS = 250_000

ProgressCallback = Callable[[int, int], None]


class _Positioned:
    """An Arrow stream plus a function telling how far the underlying file has been read."""

    def __init__(self, stream: pa.NativeFile, position: Callable[[], int]) -> None:
        self.stream, self.position = stream, position


class TextSource:
    """Context manager giving an Arrow input stream over the rows of a text file, a `.gz`, or a
    zip member, plus the total size for progress (compressed bytes, or the member's size)."""

    def __init__(self, path: Path, layout: TextLayout) -> None:
        self.path, self.layout = path, layout
        self._closers: list[Any] = []  # zip archives, Python and Arrow files: all have close()

    def __enter__(self) -> tuple[_Positioned, int]:
        if self.layout.member is not None:
            archive, raw = open_member(self.path, self.layout.member)
            assert archive is not None  # a member is always read from its archive
            self._closers += [archive, raw]
            stream = pa.PythonFile(raw, mode="r")
            size = archive.getinfo(self.layout.member).file_size
            return _Positioned(stream, raw.tell), size
        file = pa.OSFile(str(self.path), "rb")
        self._closers.append(file)
        size = self.path.stat().st_size
        if self.path.suffix.lower() == ".gz":
            stream = pa.CompressedInputStream(file, "gzip")
            self._closers.append(stream)
            return _Positioned(stream, file.tell), size
        return _Positioned(file, file.tell), size

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for closer in reversed(self._closers):
            closer.close()


def text_batches(
    path: Path,
    layout: TextLayout,
    names: list[str],
    on_malformed: Callable[[int], None],
    progress: ProgressCallback | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Batches of the columns `names` (as text) of a text file; rows with the wrong number of
    fields are skipped and counted through `on_malformed`, before the batch that follows them."""
    malformed = 0

    def on_invalid(_row: object) -> str:
        nonlocal malformed
        malformed += 1
        return "skip"

    parse = pacsv.ParseOptions(
        delimiter=layout.delimiter,
        quote_char=layout.quote or False,  # GBIF/DwC-A tab files are mostly unquoted
        newlines_in_values=layout.quote is not None,  # quoted descriptions may span lines
        invalid_row_handler=on_invalid,
    )
    convert = pacsv.ConvertOptions(
        include_columns=names,
        column_types={n: pa.string() for n in names},
        strings_can_be_null=True,
    )
    compressed = layout.member is not None or path.suffix.lower() == ".gz"
    with TextSource(path, layout) as (source, size):
        # no read-ahead thread: one left reading a closed stream after a parse error
        # aborted the process at exit (exit 134), and on 2 cores it was slower anyway
        read = pacsv.ReadOptions(
            block_size=TEXT_BLOCK_BYTES,
            encoding=layout.encoding,
            use_threads=False,
            column_names=list(layout.names) if layout.names else None,
            skip_rows=layout.header_lines if layout.names else 0,
        )
        reader = None
        try:
            reader = pacsv.open_csv(source.stream, read, parse, convert)
            for batch in joined(reader, TEXT_BATCH_ROWS):
                on_malformed(malformed)
                malformed = 0
                yield batch
                if progress:
                    progress(min(source.position(), size), size)
        except pa.ArrowInvalid as exc:
            hint = " (not UTF-8: save it as UTF-8)" if "UTF8" in str(exc) else ""
            raise InputError(f"observations file {path} cannot be parsed{hint}: {exc}") from None
        except DAMAGED as exc:  # a zip member read through Python
            raise damaged(path, exc) from None
        except OSError as exc:  # Arrow's gzip stream: no errno; a failing disk has one
            if exc.errno is not None or not compressed:
                raise
            raise damaged(path, exc) from None
        finally:
            if reader is not None:
                reader.close()
    on_malformed(malformed)


def parquet_batches(
    path: Path,
    schema: pa.Schema,
    names: list[str],
    species: str,
    progress: ProgressCallback | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """Batches of the columns `names` of a Parquet file; the `species` column, when text,
    stays dictionary-encoded as Parquet stores it (a fraction of the memory and time of
    decoding every name)."""
    import pyarrow.parquet as pq  # here: 5 ms of imports a text file does not need

    try:
        kind = schema.field(species).type
        text = [species] if pa.types.is_string(kind) or pa.types.is_large_string(kind) else []
        pfile = pq.ParquetFile(path, read_dictionary=text, pre_buffer=False)
        total = pfile.metadata.num_rows
        done = 0
        for batch in pfile.iter_batches(PARQUET_BATCH_ROWS, columns=names):
            yield batch
            done += batch.num_rows
            if progress:
                progress(done, total)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"observations file {path} cannot be read: {exc}") from None


def read_header(path: Path, layout: TextLayout) -> list[str]:
    """The column names of a text file: its header line, or those meta.xml declares."""
    if layout.names is not None:  # a Darwin Core Archive: columns from meta.xml
        return list(layout.names)
    archive, raw = open_member(path, layout.member)
    with raw:
        first = raw.read(1 << 20).split(b"\n", 1)[0]
    if archive is not None:
        archive.close()
    header = first.decode(layout.encoding).lstrip("\ufeff").rstrip("\r\n")
    if not header.strip():
        raise InputError(f"observations file {path} is empty (no header line)")
    return [c.strip().strip('"') for c in header.split(layout.delimiter)]


def joined(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Small record batches joined into batches of at least `rows` rows (the last may be
    shorter): few large batches keep the per-batch work of validation and counting small."""
    group: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        group.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _join(group)
            group, count = [], 0
    if group:
        yield _join(group)


def _join(group: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(group) == 1:
        return group[0]
    batches = pa.Table.from_batches(group).combine_chunks().to_batches()
    return batches[0] if batches else group[0]
