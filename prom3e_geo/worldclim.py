"""WorldClim 2.1 at 5 arc-minutes as the 20 environment features of TaxaBind's env encoder.

The features are those of SINR's `data/env/format_env_feats.py`: channel 0 the elevation, then
bio1 ... bio19; values below -1e6 (WorldClim's nodata, -3.4e38) are missing; each band is
z-scored over its valid cells (population standard deviation). The result is a 20-band float32
COG (NaN nodata) whose band descriptions name the channels and whose tags hold each band's mean
and standard deviation, so the environment sampler knows not to standardise it again.

Inputs, in WorldClim's own layout: the archives `wc2.1_5m_elev.zip` and `wc2.1_5m_bio.zip`
(holding `wc2.1_5m_elev.tif`, `wc2.1_5m_bio_1.tif` ... `wc2.1_5m_bio_19.tif`), downloaded from
`base_url` or found in a folder, or the GeoTIFFs themselves in a folder. Downloads go to a
`.part` file that a later run resumes (HTTP Range), are checked against the announced size and
the zip's own CRCs, and only then take their final name.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prom3e_geo.errors import DownloadError, InputError
from prom3e_geo.net import RetryPolicy, dropped, reason, session

if TYPE_CHECKING:
    import requests
    from affine import Affine
from prom3e_geo.partials import partial_path, remove, remove_stale_partials
from prom3e_geo.settings import WORLDCLIM_URL

RESOLUTION = "5m"
ENV_CHANNELS = ("elevation",) + tuple(f"bio{i}" for i in range(1, 20))
ARCHIVES = {
    f"wc2.1_{RESOLUTION}_elev.zip": [f"wc2.1_{RESOLUTION}_elev.tif"],
    f"wc2.1_{RESOLUTION}_bio.zip": [f"wc2.1_{RESOLUTION}_bio_{i}.tif" for i in range(1, 20)],
}
BAND_FILES = [name for names in ARCHIVES.values() for name in names]  # in channel order
MISSING_BELOW = -1e6
SCALING_TAG = "PROM3E_GEO_ENV_SCALING"  # present: the bands are already z-scored
POLICY = RetryPolicy(retries=3, backoff=0.5, timeout=60.0)
CHUNK = 1 << 14  # small enough that a broken download keeps most of what arrived

log = logging.getLogger(__name__)


def prepare_worldclim(
    out: Path,
    source: Path | None = None,
    base_url: str = WORLDCLIM_URL,
    downloads: Path | None = None,
    report: Callable[[str], None] = log.info,
) -> Path:
    """Write the 20-band feature raster to `out` (atomically) from `source` (a folder of the
    archives or GeoTIFFs) or from archives downloaded from `base_url` into `downloads`."""
    if source is not None:
        bands = _bands_in_folder(Path(source))
    else:
        folder = downloads or out.parent
        folder.mkdir(parents=True, exist_ok=True)
        for archive in ARCHIVES:
            download(f"{base_url.rstrip('/')}/{archive}", folder / archive, report)
        bands = _bands_in_folder(folder)
    _write_features(bands, out, report)
    return out


def download(url: str, dest: Path, report: Callable[[str], None] = log.info) -> Path:
    """`url` to `dest`, resuming `dest.part`, checked (size, zip CRCs) before the rename.

    Server errors and 429s are retried by the session, a connection that breaks mid-transfer
    by resuming where it broke (both under `POLICY`); what still fails is a `DownloadError`."""
    if dest.is_file():
        return dest
    import requests

    part = dest.with_name(dest.name + ".part")
    http = session(POLICY, 1, "WorldClim")
    try:
        POLICY.call(lambda: _fetch_into(http, url, part, report), dropped)
    except requests.RequestException as exc:
        raise DownloadError(
            f"cannot download {url} ({reason(exc)}) after {POLICY.retries} retries; run again "
            "to resume, or download the WorldClim archives yourself and pass --from FOLDER"
        ) from None
    finally:
        http.close()
    try:
        with zipfile.ZipFile(part) as zf:
            bad = zf.testzip()
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        bad, names = "(not a zip archive)", set()
    if bad is not None:
        part.unlink()
        raise InputError(f"{url}: {bad} fails its CRC check; the download was removed, run again")
    missing = [n for n in ARCHIVES.get(dest.name, []) if n not in names]
    if missing:
        raise InputError(f"{url} does not hold {', '.join(missing[:3])}")
    os.replace(part, dest)
    return dest


def _fetch_into(
    http: requests.Session, url: str, part: Path, report: Callable[[str], None]
) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.get(url, headers=headers, stream=True, timeout=POLICY.timeout) as response:
        if response.status_code == 416:  # nothing left to fetch
            return
        if response.status_code not in (200, 206):
            raise DownloadError(
                f"cannot download {url}: HTTP {response.status_code}"
                + (f" after {POLICY.retries} retries" if response.status_code >= 500 else "")
            )
        if response.status_code == 200:
            have = 0  # the server ignored the range: start over
        total = _total_size(response, have)
        resuming = f", resuming at {have / 2**20:,.1f} MiB" if have else ""
        size = f"{total / 2**20:,.1f} MiB" if total else "size unknown"
        report(f"downloading {url} ({size}{resuming})")
        with open(part, "ab" if have else "wb") as fh:
            for chunk in response.iter_content(CHUNK):
                fh.write(chunk)
    got = part.stat().st_size
    if total is not None and got != total:
        import requests

        raise requests.exceptions.ChunkedEncodingError(f"{url}: got {got} of {total} bytes")


def _total_size(response: requests.Response, have: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return int(length) + have if length is not None else None


def _bands_in_folder(folder: Path) -> list[str]:
    """GDAL paths of the 20 GeoTIFFs, in channel order, from loose files or the archives."""
    if not folder.is_dir():
        raise InputError(f"WorldClim folder {folder} does not exist")
    loose = {}
    for path in sorted(folder.rglob("*.tif"), reverse=True):  # one walk; the first path wins
        loose[path.name] = path
    paths = []
    for archive, names in ARCHIVES.items():
        for name in names:
            if name in loose:
                paths.append(str(loose[name]))
            elif (folder / archive).is_file():
                paths.append(f"/vsizip/{folder / archive}/{name}")
            else:
                raise InputError(
                    f"{folder} holds neither {name} nor {archive} (WorldClim 2.1, {RESOLUTION})"
                )
    return paths


def _write_features(paths: list[str], out: Path, report: Callable[[str], None]) -> None:
    import rasterio
    import rasterio.shutil

    with rasterio.open(paths[0]) as first:
        shape, transform, crs = first.shape, first.transform, first.crs
    remove_stale_partials(out)
    tmp = partial_path(out)
    staging = tmp.with_name(tmp.name + ".staging.tif")
    stats = {}
    try:
        with rasterio.open(
            staging, "w", driver="GTiff", width=shape[1], height=shape[0], count=len(paths),
            dtype="float32", crs=crs or "EPSG:4326", transform=transform, nodata=np.nan,
            tiled=True, blockxsize=256, blockysize=256, compress="DEFLATE", predictor=3,
            BIGTIFF="IF_SAFER",
        ) as dst:  # fmt: skip
            for band, (name, path) in enumerate(zip(ENV_CHANNELS, paths, strict=True), start=1):
                z, mean, std = _zscored(path, shape, transform)
                dst.write(z, band)
                dst.set_band_description(band, name)
                dst.update_tags(band, mean=repr(mean), std=repr(std), source=Path(path).name)
                stats[name] = {"mean": mean, "std": std}
            dst.update_tags(
                **{
                    SCALING_TAG: "z-score per band over valid cells (SINR format_env_feats)",
                    "channels": ",".join(ENV_CHANNELS),
                    "source": f"WorldClim 2.1, {RESOLUTION}",
                    "statistics": json.dumps(stats),
                }
            )
        report(f"writing {out}")
        rasterio.shutil.copy(
            staging, tmp, driver="COG", compress="DEFLATE", predictor="3", BIGTIFF="IF_SAFER"
        )
        os.replace(tmp, out)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read WorldClim data: {exc}") from None
    finally:
        remove(staging)
        remove(tmp)


def _zscored(
    path: str, shape: tuple[int, int], transform: Affine
) -> tuple[np.ndarray, float, float]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            if src.shape != shape or src.transform != transform:
                raise InputError(f"{path}: grid differs from the other WorldClim bands")
            values = src.read(1, out_dtype="float64")
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    values[~(values >= MISSING_BELOW)] = np.nan  # below -1e6, and NaN, are missing
    valid = np.isfinite(values)
    if not valid.any():
        raise InputError(f"{path} has no valid cells")
    mean = float(values[valid].mean())
    std = float(values[valid].std())
    z = (values - mean) / (std or 1.0)
    return z.astype(np.float32), mean, std
