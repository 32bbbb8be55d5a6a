"""How an observation text file is laid out: zip member, encoding, delimiter, quoting, header."""

from __future__ import annotations

import codecs
import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

from prom3e_geo.errors import InputError

SNIFF_BYTES = 4 << 20
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")


@dataclass(frozen=True)
class TextLayout:
    member: str | None  # the member of a zip archive holding the rows, None for a plain file
    encoding: str  # a Python/Arrow codec name: utf8 or latin-1, or what meta.xml says
    delimiter: str
    quote: str | None  # None: fields are never quoted
    header_lines: int  # lines before the first row
    names: tuple[str, ...] | None = None  # column names when the file has no header (meta.xml)


def text_layout(path: Path) -> TextLayout:
    """The layout of a text observation file (plain, `.gz` or zip), as real services deliver it:

    * an iNaturalist export: `observations-NNN.csv`, or the zip holding it;
    * a GBIF "simple CSV" download: a zip holding one tab-separated `NNNN.csv` (older ones quoted);
    * a GBIF Darwin Core Archive: a zip whose `meta.xml` names the core file (`occurrence.txt`, or
      any other name), its encoding, delimiter, quote, header lines and its columns by index and
      Darwin Core term, as the Darwin Core text guide defines them;
    * plain CSV / TSV text, optionally `.gz`; UTF-8, or Latin-1 when the text is not UTF-8.
    """
    if not zipfile.is_zipfile(path):
        head = _head(path, None)
        return _sniffed(head, None)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/") and "__MACOSX" not in n]
            meta = [n for n in names if Path(n).name.lower() == "meta.xml"]
            if meta:
                return _from_meta(archive, meta[0], path)
            texts = [n for n in names if Path(n).suffix.lower() in TEXT_SUFFIXES]
            if len(texts) != 1:
                raise InputError(
                    f"archive {path} holds no meta.xml and {len(texts)} text files "
                    f"({', '.join(texts[:5]) or 'none'}); give one CSV/TSV or a Darwin Core Archive"
                )
            return _sniffed(_head(path, texts[0]), texts[0])
    except zipfile.BadZipFile as exc:
        raise InputError(f"archive {path} cannot be read: {exc}") from None


def open_member(
    path: Path, member: str | None
) -> tuple[zipfile.ZipFile | None, IO[bytes] | gzip.GzipFile]:
    """A binary file object over the rows (the caller closes it)."""
    if member is not None:
        archive = zipfile.ZipFile(path)
        return archive, archive.open(member)
    if path.suffix.lower() == ".gz":
        return None, gzip.open(path, "rb")
    return None, open(path, "rb")


def _head(path: Path, member: str | None) -> bytes:
    archive, f = open_member(path, member)
    try:
        with f:
            head: bytes = f.read(SNIFF_BYTES)
            return head
    except DAMAGED as exc:
        raise damaged(path, exc) from None
    finally:
        if archive is not None:
            archive.close()


# what Python's gzip, zlib and zipfile raise on a truncated or corrupt stream (an EOFError
# would otherwise reach the command line as an interrupt)
DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile)


def damaged(path: Path, exc: BaseException) -> InputError:
    """The input error for a compressed observation file that is truncated or corrupt."""
    reason = str(exc) or type(exc).__name__
    return InputError(
        f"observations file {path} is a truncated or corrupt compressed file ({reason}); "
        "download it again"
    )


def _encoding(head: bytes) -> str:
    """utf8, or latin-1 when the first 4 MiB are not valid UTF-8 (older exports, spreadsheets
    saved as "CSV (Windows)"): every byte string is valid Latin-1."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut by the end of the sample
            return "latin-1"
    return "utf8"


def _sniffed(head: bytes, member: str | None) -> TextLayout:
    encoding = _encoding(head)
    first = head.split(b"\n", 1)[0].decode(encoding).lstrip("\ufeff").rstrip("\r")
    if not first.strip():
        raise InputError("the observation file is empty (no header line)")
    counts = {d: first.count(d) for d in ("\t", ",", ";")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    fields = first.split(delimiter)
    quoted = any(f.startswith('"') and f.endswith('"') for f in fields) or delimiter != "\t"
    return TextLayout(member, encoding, delimiter, '"' if quoted else None, 1)


def _from_meta(archive: zipfile.ZipFile, meta_name: str, path: Path) -> TextLayout:
    """The core file of a Darwin Core Archive as its meta.xml describes it."""
    try:
        root = ElementTree.fromstring(archive.read(meta_name))
    except ElementTree.ParseError as exc:
        raise InputError(f"archive {path}: meta.xml is not valid XML ({exc})") from None
    core = next((e for e in root if e.tag.rsplit("}", 1)[-1] == "core"), None)
    if core is None:
        raise InputError(f"archive {path}: meta.xml has no <core> element")
    location = next((e.text for e in core.iter() if e.tag.rsplit("}", 1)[-1] == "location"), None)
    folder = str(Path(meta_name).parent)
    member = location if folder in ("", ".") else f"{folder}/{location}"
    if not location or member not in archive.namelist():
        raise InputError(f"archive {path}: meta.xml names the core file {location!r}, not in it")
    columns: dict[int, str] = {}
    for element in core:
        tag = element.tag.rsplit("}", 1)[-1]
        index = element.get("index")
        if tag in ("id", "coreid") and index is not None:
            columns.setdefault(int(index), "id")
        elif tag == "field" and index is not None:
            term = element.get("term", "")
            columns[int(index)] = term.rstrip("/").rsplit("/", 1)[-1].rsplit("#")[-1]
    if not columns:
        raise InputError(f"archive {path}: meta.xml declares no indexed fields for the core")
    names = tuple(columns.get(i, f"column_{i}") for i in range(max(columns) + 1))
    encoding = core.get("encoding", "UTF-8")
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(
            f"archive {path}: meta.xml names an unknown encoding {encoding!r}"
        ) from None
    delimiter = _unescape(core.get("fieldsTerminatedBy", ","))
    quote = _unescape(core.get("fieldsEnclosedBy", '"')) or None
    return TextLayout(
        member,
        "utf8" if encoding == "utf-8" else encoding,
        delimiter,
        quote,
        int(core.get("ignoreHeaderLines", "0")),
        names,
    )


def _unescape(text: str) -> str:
    """meta.xml writes a tab as the two characters \\t."""
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("&quot;", '"')
