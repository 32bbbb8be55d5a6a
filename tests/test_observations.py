"""Observation readers: formats, validation counts, filters, streaming, bad files."""

from __future__ import annotations

import datetime as dt
import gzip
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from prom3e_geo import observations
from prom3e_geo.errors import InputError
from prom3e_geo.observations import ObservationReader, batches

INAT = """id,observed_on,description,latitude,longitude,scientific_name,quality_grade
1,2023-05-01,"plain",40.0,-100.0,Cardinalis cardinalis,research
2,2023-05-02,"two
lines, and a comma",40.1,-100.1,Cardinalis cardinalis,needs_id
3,2022-01-01,"x",abc,-100.0,Quercus alba,research
4,2023-07-01,"x",,-100.0,Quercus alba,research
5,2023-07-01,"x",95,-100.0,Quercus alba,research
6,2023-07-01,"x",40,-190,Quercus alba,research
7,2023-07-01,"x",40,-100,,research
8,2023-07-01,"x",41,-101,  Quercus alba ,research
9,not-a-date,"x",41.5,-101.5,Quercus alba,research
10,2023-07-01,"x",41,-101
"""
GBIF = (
    "gbifID\tdecimalLatitude\tdecimalLongitude\tspecies\teventDate\n"
    "1\t40.0\t-100.0\tCardinalis cardinalis\t2023-05-01T10:00\n"
    '2\t40.1\t-100.1\tQuercus "white" alba\t2023\n'
    "3\t\t-100\tQuercus alba\t2023-01-01\n"
    "4\t41\t-101\t\t2023-01-01\n"
)


DWC = "http://rs.tdwg.org/dwc/terms/"


def gbif_meta(columns, core="occurrence.txt", header=1, delimiter="\\t", quote="",
              encoding="UTF-8", row_type="Occurrence") -> str:  # fmt: skip
    """meta.xml as GBIF writes it: core attributes, the file, id and one field per column."""
    fields = "\n".join(
        f'    <field index="{i}" term="{DWC if c != "gbifID" else "http://rs.gbif.org/terms/1.0/"}{c}"/>'
        for i, c in enumerate(columns)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">
  <core encoding="{encoding}" fieldsTerminatedBy="{delimiter}" linesTerminatedBy="\\n"
        fieldsEnclosedBy="{quote}" ignoreHeaderLines="{header}"
        rowType="http://rs.tdwg.org/dwc/terms/{row_type}">
    <files>
      <location>{core}</location>
    </files>
    <id index="0" />
{fields}
  </core>
</archive>
"""


def read_all(reader):
    chunks = list(reader)
    lon = np.concatenate([c.lon for c in chunks])
    lat = np.concatenate([c.lat for c in chunks])
    names = [reader.species_names[i] for c in chunks for i in c.species]
    return lon, lat, names


@pytest.fixture
def inat(tmp_path):
    path = tmp_path / "inat.csv"
    path.write_text(INAT)
    return path


def test_inat_rows_are_validated_and_counted_by_reason(inat):
    reader = ObservationReader(inat)
    lon, lat, names = read_all(reader)
    assert lon.tolist() == [-100.0, -100.1, -101.0, -101.5]
    assert lat.tolist() == [40.0, 40.1, 41.0, 41.5]
    assert names == ["Cardinalis cardinalis"] * 2 + ["Quercus alba"] * 2  # whitespace trimmed
    r = reader.report
    assert (r.rows_read, r.rows_kept) == (10, 4)
    assert dict(r.dropped) == {
        "malformed_row": 1,
        "missing_coordinates": 1,
        "non_numeric_coordinates": 1,
        "latitude_out_of_range": 1,
        "longitude_out_of_range": 1,
        "empty_species": 1,
    }
    assert "non-numeric coordinates: 1" in r.summary()


def test_research_grade_and_date_filters(inat):
    reader = ObservationReader(inat, research_grade=True)
    assert read_all(reader)[0].tolist() == [-100.0, -101.0, -101.5]
    assert reader.report.dropped["not_research_grade"] == 1
    reader = ObservationReader(inat, date_range=(dt.date(2023, 5, 2), dt.date(2023, 12, 31)))
    assert read_all(reader)[0].tolist() == [-100.1, -101.0]
    assert reader.report.dropped["invalid_date"] == 1
    assert reader.report.dropped["outside_date_range"] == 1


def test_gbif_tab_file_is_unquoted_and_uses_species(tmp_path):
    path = tmp_path / "occurrence.csv"
    path.write_text(GBIF)
    reader = ObservationReader(path)
    lon, lat, names = read_all(reader)
    assert reader.columns.species == "species" and reader.columns.lat == "decimalLatitude"
    assert names == ["Cardinalis cardinalis", 'Quercus "white" alba']
    assert dict(reader.report.dropped) == {"missing_coordinates": 1, "empty_species": 1}


def test_darwin_core_archive_and_gzip(tmp_path, inat):
    archive = tmp_path / "dwca.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.xml", gbif_meta(["gbifID", "decimalLatitude", "decimalLongitude",
                                           "species", "eventDate"]))  # fmt: skip
        zf.writestr("occurrence.txt", GBIF)
    assert read_all(ObservationReader(archive))[2] == [
        "Cardinalis cardinalis",
        'Quercus "white" alba',
    ]
    gz = tmp_path / "inat.csv.gz"
    gz.write_bytes(gzip.compress(inat.read_bytes()))
    from_gz, from_csv = read_all(ObservationReader(gz)), read_all(ObservationReader(inat))
    np.testing.assert_array_equal(from_gz[0], from_csv[0])
    assert from_gz[2] == from_csv[2]


def test_geoparquet_in_a_projected_crs_and_plain_parquet(tmp_path):
    import geopandas as gpd
    import pandas as pd
    import shapely

    frame = gpd.GeoDataFrame(
        {"species": ["a", "b", None]},
        geometry=[shapely.Point(-100, 40), None, shapely.Point(-90, 35)],
        crs=4326,
    ).to_crs(5070)
    frame.to_parquet(tmp_path / "obs.parquet")
    reader = ObservationReader(tmp_path / "obs.parquet")
    lon, lat, names = read_all(reader)
    np.testing.assert_allclose([lon[0], lat[0]], [-100, 40], atol=1e-9)
    assert names == ["a"]
    assert dict(reader.report.dropped) == {"missing_coordinates": 1, "empty_species": 1}
    pd.DataFrame({"lat": [40.0, 95.0], "lon": [-100.0, -100.0], "taxon_id": [12, 13]}).to_parquet(
        tmp_path / "plain.parquet"
    )
    reader = ObservationReader(tmp_path / "plain.parquet")
    assert read_all(reader)[2] == ["12"]
    assert reader.report.dropped["latitude_out_of_range"] == 1


def test_streaming_in_small_blocks_gives_the_same_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    n = 5000
    path = tmp_path / "big.csv"
    lines = ["latitude,longitude,scientific_name"]
    lines += [
        f"{a:.5f},{b:.5f},sp{s}"
        for a, b, s in zip(
            rng.uniform(30, 45, n), rng.uniform(-120, -80, n), rng.integers(0, 50, n), strict=True
        )
    ]
    path.write_text("\n".join(lines) + "\n")
    whole = read_all(ObservationReader(path))
    monkeypatch.setattr(batches, "TEXT_BLOCK_BYTES", 4096)
    monkeypatch.setattr(batches, "TEXT_BATCH_ROWS", 300)  # blocks of ~150 rows, joined
    seen = []
    reader = ObservationReader(path, progress=lambda done, total: seen.append((done, total)))
    assert len(list(ObservationReader(path))) > 10  # many chunks
    streamed = read_all(reader)
    np.testing.assert_array_equal(streamed[0], whole[0])
    assert streamed[2] == whole[2]
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size


def test_explicit_columns(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("y,x,taxon\n40,-100,a\n")
    reader = ObservationReader(path, lat_col="y", lon_col="x", species_col="taxon")
    assert read_all(reader)[0].tolist() == [-100.0]
    with pytest.raises(InputError, match="no column 'nope'"):
        ObservationReader(path, lat_col="nope")


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (b"", {}, "empty"),
        (b"\xff\xfe\x00garbage\x00\n", {}, "no latitude column"),  # read as Latin-1
        (b"a,b,c\n1,2,3\n", {}, "no latitude column"),
        (b"latitude,longitude\n1,2\n", {}, "no species column"),
        (b"latitude,longitude,species\n1,2,a\n", {"research_grade": True}, "quality_grade"),
        (
            b"latitude,longitude,species\n1,2,a\n",
            {"date_range": (dt.date(2020, 1, 1), None)},
            "date filter",
        ),
    ],
)
def test_bad_files_raise_one_line_input_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as exc:
        list(ObservationReader(path, **kwargs))
    assert "\n" not in str(exc.value)


def test_missing_and_corrupt_binary_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ObservationReader(tmp_path / "missing.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not valid Parquet"):
        ObservationReader(bad)
    zip_without = tmp_path / "a.zip"
    with zipfile.ZipFile(zip_without, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(InputError, match="no latitude column"):  # one text file: read as CSV
        ObservationReader(zip_without)
    with zipfile.ZipFile(zip_without, "w") as zf:
        zf.writestr("a.csv", "x")
        zf.writestr("b.csv", "y")
    with pytest.raises(InputError, match="no meta.xml and 2 text files"):
        ObservationReader(zip_without)


def _latin1_csv(path, rows: int, latin_from: int):
    lines = ["id,observed_on,latitude,longitude,scientific_name,quality_grade"]
    for i in range(rows):
        name = "Quercus alba" if i < latin_from or i % 100 else "Pl\xe1tano \xe9spa\xf1ol"
        lines.append(
            f"{i},2023-06-01,{38 + (i % 97) / 100:.5f},{-99 + (i % 89) / 100:.5f},{name},research"
        )
    path.write_bytes("\n".join(lines).encode("latin-1"))
    return path


def test_latin1_files_are_read_or_refused_cleanly_every_time(tmp_path):
    """Regression: a CSV failing to parse mid-read aborted the process about half the time
    (exit 134, `terminate called without an active exception`): the reader's read-ahead thread
    outlived its stream. Latin-1 text within the first 4 MiB is now read as Latin-1; beyond
    that it is a clean exit 2. The late file, where the abort happened, runs five times through
    the installed command (an abort every other run goes unseen once in 32 suites)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("prom3e-geo")
    early = _latin1_csv(tmp_path / "early.csv", 20_000, 0)
    late = _latin1_csv(tmp_path / "late.csv", 200_000, 150_000)  # about 9 MB: past the sniff
    assert late.stat().st_size > 5 << 20
    for path, code, runs in ((early, 0, 1), (late, 2, 5)):
        for run in range(runs):
            out = tmp_path / f"{path.stem}{run}.tif"
            r = subprocess.run([exe, "diversity", "--observations", path, "--aoi",
                                "-100,37,-97,40", "--out", out], capture_output=True, text=True)  # fmt: skip
            assert r.returncode == code, (run, r.returncode, r.stderr)
            if code == 2:
                errors = [line for line in r.stderr.splitlines() if "error:" in line]
                assert len(errors) == 1 and "not UTF-8" in errors[0] and not out.exists()
            else:
                assert "of 2 species" in r.stdout


def _layout_rows():
    """Five observations: (gbifID, lat, lon, species, date); one species name is Latin-1."""
    return [
        ("1", "40.0", "-100.0", "Cardinalis cardinalis", "2023-05-01"),
        ("2", "40.5", "-100.5", "Quercus alba", "2023-05-02"),
        ("3", "41.0", "-101.0", "Pl\xe1tano com\xfan", "2023-05-03"),
        ("4", "41.5", "-101.5", "Quercus alba", "2023-05-04"),
        ("5", "42.0", "-102.0", "Cardinalis cardinalis", "2023-05-05"),
    ]


@pytest.mark.parametrize(
    "layout",
    [
        "GBIF Darwin Core Archive (tab, header line, occurrence.txt)",
        "Darwin Core Archive without a header row, comma and quotes, records.csv, ISO-8859-1",
        "iNaturalist export zip (observations-123.csv.zip)",
        "GBIF simple CSV zip, older quoted form",
    ],
)
def test_download_layouts_of_gbif_and_inaturalist(tmp_path, layout):
    """Regression: iNaturalist export zips and GBIF simple CSV zips were refused ("has no
    occurrence.txt"), a DwC-A defined by meta.xml alone lost its first row to a header, a core
    not named occurrence.txt was refused, and an older quoted GBIF CSV broke the reader."""
    rows = _layout_rows()
    columns = ["gbifID", "decimalLatitude", "decimalLongitude", "species", "eventDate"]
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if layout.startswith("GBIF Darwin"):
            text = "\t".join(columns) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
            zf.writestr("meta.xml", gbif_meta(columns))
            zf.writestr("occurrence.txt", text.encode("utf-8"))
            zf.writestr("verbatim.txt", "gbifID\n1\n")  # an extension file, not the core
        elif layout.startswith("Darwin Core Archive without"):
            text = "".join(",".join(f'"{v}"' for v in r) + "\r\n" for r in rows)
            zf.writestr("meta.xml", gbif_meta(columns, "records.csv", 0, ",", "&quot;",
                                              "ISO-8859-1"))  # fmt: skip
            zf.writestr("records.csv", text.encode("latin-1"))
        elif layout.startswith("iNaturalist"):
            path = tmp_path / "observations-123.csv.zip"
            zf.close()
            header = "id,observed_on,latitude,longitude,scientific_name\n"
            body = "".join(f"{r[0]},{r[4]},{r[1]},{r[2]},{r[3]}\n" for r in rows)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as inat:
                inat.writestr("observations-123.csv", (header + body).encode("utf-8"))
        else:
            quoted = ["\t".join(f'"{v}"' for v in r) for r in [columns, *rows]]
            zf.writestr("0001234-230810091245214.csv", "\n".join(quoted).encode("utf-8"))
    reader = ObservationReader(path)
    lon, lat, names = read_all(reader)
    assert lat.tolist() == [40.0, 40.5, 41.0, 41.5, 42.0]  # the first row is data, not a header
    assert lon.tolist() == [-100.0, -100.5, -101.0, -101.5, -102.0]
    assert names == [r[3] for r in rows]  # "Platano comun" decoded as its encoding says
    assert reader.report.rows_read == 5 and reader.report.rows_kept == 5


def test_gbif_snapshot_parquet_keeps_species_dictionary_encoded(tmp_path, monkeypatch):
    """GBIF's cloud snapshot: lower-case Darwin Core columns, species stored as a Parquet
    dictionary; names are trimmed, blank or missing ones dropped, across several batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(batches, "PARQUET_BATCH_ROWS", 3)
    species = [" Cardinalis cardinalis", "Cardinalis cardinalis", "", None, "Poecile atricapillus ",
               "  ", "Cardinalis cardinalis", "Poecile atricapillus"]  # fmt: skip
    n = len(species)
    table = pa.table(
        {
            "gbifid": np.arange(n),
            "species": pa.array(species, pa.string()),
            "decimallatitude": np.linspace(30, 45, n),
            "decimallongitude": np.r_[np.linspace(-120, -80, n - 1), 200.0],  # the last: invalid
        }
    )
    pq.write_table(table, tmp_path / "occurrence.parquet", row_group_size=4)
    reader = ObservationReader(tmp_path / "occurrence.parquet")
    assert reader.columns.lat == "decimallatitude" and reader.columns.species == "species"
    lon, _, names = read_all(reader)
    assert names == ["Cardinalis cardinalis"] * 2 + [
        "Poecile atricapillus",
        "Cardinalis cardinalis",
    ]
    assert reader.species_names == ["Cardinalis cardinalis", "Poecile atricapillus"]
    assert dict(reader.report.dropped) == {"empty_species": 3, "longitude_out_of_range": 1}
    assert reader.report.rows_read == n and reader.report.rows_kept == 4
    np.testing.assert_allclose(lon, np.linspace(-120, -80, n - 1)[[0, 1, 4, 6]])


def test_read_ahead_hands_over_errors_and_stops_its_thread_early():
    import threading

    def items(fail_at=None):
        for i in range(100):
            if i == fail_at:
                raise ValueError("broken at 5")
            yield i

    assert list(observations.read_ahead(items())) == list(range(100))
    with pytest.raises(ValueError, match="broken at 5"):
        list(observations.read_ahead(items(5)))
    stream = observations.read_ahead(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # a consumer that stops: the producer thread ends too
    assert not [t for t in threading.enumerate() if t.name == "observations-reader"]


def test_species_codes_stay_the_same_across_batches_and_blanks():
    """Names padded with blanks are one species; codes follow the first kept appearance and
    hold across batches, whose dictionaries order the names differently."""
    from prom3e_geo.observations.species import SpeciesCodes
    from prom3e_geo.observations.validation import trimmed_names

    codes = SpeciesCodes()
    first = trimmed_names(pa.array(["b", " a", "b ", "c", "a"]))
    keep = np.array([True, True, True, False, True])  # "c" is dropped: no code yet
    assert codes.codes(first, keep).tolist() == [0, 1, 0, 1]
    second = trimmed_names(pa.array(["c", "a", "d", " b", None]))
    assert codes.codes(second, np.array([True, True, True, True, False])).tolist() == [2, 1, 3, 0]
    assert codes.names == ["b", "a", "c", "d"]
    assert codes.codes(trimmed_names(pa.array(["d", "d"]))).tolist() == [3, 3]
