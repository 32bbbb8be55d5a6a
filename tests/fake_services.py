"""Fake imagery services on 127.0.0.1 for offline tests and benchmarks.

One threaded HTTP server plays:
- Sentinel Hub: `POST /oauth/token` (client credentials -> bearer token with a lifetime) and
  `POST /api/v1/process` (a uint16 GeoTIFF of the evalscript's input bands computed from the
  request's bbox, CRS and size: B04 = easting / 10 mod 50000, B03 = northing / 10 mod 50000,
  B02 = UTM zone number, any other spectral band a constant `OTHER_BAND_DN`, dataMask = 0
  inside `nodata_box`, CLM = 1 on a 640 m checkerboard of period 5);
- a STAC API: `/stac` landing page, `/stac/search` (bbox, datetime, eo:cloud_cover filter),
  with items whose assets are COGs under `/files/` served with HTTP range requests.

Faults are injected per Process API request, either from a queue (`faults`) or at random
(`fault_rate`, seeded): "429" (Retry-After in ms), "500", "slow" (answers after `slow_s`),
"truncated" (a complete response holding half a TIFF), "expire" (revokes all tokens, 401).
Requests whose bbox intersects `reject_box` always get 400.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-secret-DO-NOT-LEAK-7f3a9c"


OTHER_BAND_DN = {
    b: 100 * (k + 1)
    for k, b in enumerate(("B01", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"))
}


def pattern(epsg: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fake Sentinel Hub's B04, B03, B02, CLM values at UTM pixel centres (x, y)."""
    clm = ((np.floor(x / 640) + np.floor(y / 640)) % 5 == 0).astype(np.uint16)
    return np.stack(
        [
            (np.floor(x / 10) % 50000).astype(np.uint16),
            (np.floor(y / 10) % 50000).astype(np.uint16),
            np.full(np.shape(x), epsg % 100, dtype=np.uint16),
            clm,
        ]
    )


class FakeServices:
    def __init__(
        self,
        token_lifetime: float = 3600,
        faults: list[str] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = ("429", "500", "truncated"),
        slow_s: float = 2.0,
        nodata_box: tuple[int, float, float, float, float] | None = None,
        reject_box: tuple[int, float, float, float, float] | None = None,
        files: Path | None = None,
        seed: int = 0,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.faults = deque(faults or [])
        self.fault_rate, self.fault_kinds = fault_rate, fault_kinds
        self.slow_s = slow_s
        self.nodata_box, self.reject_box = nodata_box, reject_box
        self.files = files
        self.items: list[dict] = []
        self.stac_faults: deque[str] = deque()
        self.rng = random.Random(seed)
        self.tokens: dict[str, float] = {}
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        services = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                services.route(self, "POST", body)

            def do_GET(self):
                services.route(self, "GET", b"")

            def do_HEAD(self):
                services.route(self, "HEAD", b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServices:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routing ---------------------------------------------------------------------------

    def route(self, handler, method: str, body: bytes) -> None:
        path = urlparse(handler.path).path
        with self.lock:
            self.counts[path] += 1
        if path == "/oauth/token" and method == "POST":
            return self.token(handler, body)
        if path == "/api/v1/process" and method == "POST":
            return self.process(handler, body)
        if path == "/stac" or path == "/stac/":
            return self.send_json(handler, 200, self.landing())
        if path == "/stac/search":
            query = json.loads(body) if body else _get_query(handler.path)
            return self.search(handler, query)
        if path.startswith("/files/") and self.files is not None:
            return self.file(handler, method, self.files / path.removeprefix("/files/"))
        self.send_json(handler, 404, {"error": "not found"})

    def send(self, handler, status: int, body: bytes, content_type: str, headers=()) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def send_json(self, handler, status: int, obj, headers=()) -> None:
        self.send(handler, status, json.dumps(obj).encode(), "application/json", headers)

    # -- Sentinel Hub ------------------------------------------------------------------------

    def token(self, handler, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return self.send_json(handler, 401, {"error": "invalid_client"})
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
        self.send_json(
            handler,
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime},
        )

    def next_fault(self) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(self.fault_kinds)
        return None

    def process(self, handler, body: bytes) -> None:
        token = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            expiry = self.tokens.get(token, 0)
        if expiry < time.time():
            return self.send_json(handler, 401, {"error": {"message": "token expired"}})
        payload = json.loads(body)
        bounds = payload["input"]["bounds"]
        epsg = int(bounds["properties"]["crs"].rsplit("/", 1)[-1])
        left, bottom, right, top = bounds["bbox"]
        width, height = payload["output"]["width"], payload["output"]["height"]
        if self.reject_box and _intersects(self.reject_box, epsg, (left, bottom, right, top)):
            return self.send_json(handler, 400, {"error": {"message": "bad request"}})
        fault = self.next_fault()
        with self.lock:
            self.counts[f"fault:{fault}"] += 1
        if fault == "429":
            return self.send_json(handler, 429, {"error": "slow down"}, [("Retry-After", "20")])
        if fault == "500":
            return self.send_json(handler, 500, {"error": "internal"})
        if fault == "expire":
            with self.lock:
                self.tokens.clear()
            return self.send_json(handler, 401, {"error": {"message": "token expired"}})
        if fault == "slow":
            time.sleep(self.slow_s)
        bands = re.search(r"bands: \[([^\]]*)\]", payload["evalscript"])[1]
        names = [b.strip().strip('"') for b in bands.split(",")]
        tiff = self.render(epsg, (left, bottom, right, top), width, height, names)
        if fault == "truncated":
            tiff = tiff[: len(tiff) // 2]
        with self.lock:
            self.counts["process_ok" if fault != "truncated" else "process_truncated"] += 1
        self.send(handler, 200, tiff, "image/tiff")

    def render(self, epsg, bounds, width, height, names) -> bytes:
        left, bottom, right, top = bounds
        res_x, res_y = (right - left) / width, (top - bottom) / height
        x = left + (np.arange(width) + 0.5) * res_x
        y = top - (np.arange(height) + 0.5) * res_y
        xx, yy = np.meshgrid(x, y)
        b04, b03, b02, clm = pattern(epsg, xx, yy)
        mask = np.ones_like(b04)
        if self.nodata_box and self.nodata_box[0] == epsg:
            _, x0, y0, x1, y1 = self.nodata_box
            mask[(xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)] = 0
        values = {"B04": b04, "B03": b03, "B02": b02, "dataMask": mask, "CLM": clm}
        values |= {b: np.full_like(mask, dn) for b, dn in OTHER_BAND_DN.items()}
        data = np.stack([values[name] * mask for name in names])
        with MemoryFile() as memory:
            with memory.open(
                driver="GTiff",
                width=width,
                height=height,
                count=len(names),
                dtype="uint16",
                crs=f"EPSG:{epsg}",
                transform=from_bounds(left, bottom, right, top, width, height),
            ) as ds:
                ds.write(data)
            return memory.read()

    # -- STAC --------------------------------------------------------------------------------

    def landing(self) -> dict:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "fake",
            "description": "fake STAC API",
            "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0/item-search#query",
            ],
            "links": [
                {"rel": "self", "href": f"{self.url}/stac", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/stac", "type": "application/json"},
                {
                    "rel": "search",
                    "href": f"{self.url}/stac/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def search(self, handler, query: dict) -> None:
        with self.lock:
            fault = self.stac_faults.popleft() if self.stac_faults else None
        if fault == "429":
            return self.send_json(handler, 429, {"error": "slow down"}, [("Retry-After", "0")])
        if fault == "500":
            return self.send_json(handler, 500, {"error": "internal"})
        minx, miny, maxx, maxy = query.get("bbox", (-180, -90, 180, 90))
        max_cloud = query.get("query", {}).get("eo:cloud_cover", {}).get("lt", 101)
        start, end = query.get("datetime", "../..").split("/")
        features = [
            item
            for item in self.items
            if item["bbox"][0] < maxx
            and item["bbox"][2] > minx
            and item["bbox"][1] < maxy
            and item["bbox"][3] > miny
            and item["properties"]["eo:cloud_cover"] < max_cloud
            and (start in ("", "..") or item["properties"]["datetime"][:10] >= start[:10])
            and (end in ("", "..") or item["properties"]["datetime"][:10] <= end[:10])
        ]
        self.send_json(
            handler,
            200,
            {"type": "FeatureCollection", "features": features, "links": []},
            [("Content-Type", "application/geo+json")],
        )

    def file(self, handler, method: str, path: Path) -> None:
        if not path.is_file():
            return self.send_json(handler, 404, {"error": "no such file"})
        data = path.read_bytes()
        ranged = handler.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            first, last = int(first), min(int(last or len(data) - 1), len(data) - 1)
            with self.lock:
                self.counts["range_requests"] += 1
            return self.send(
                handler,
                206,
                data[first : last + 1],
                "image/tiff",
                [
                    ("Content-Range", f"bytes {first}-{last}/{len(data)}"),
                    ("Accept-Ranges", "bytes"),
                ],
            )
        self.send(handler, 200, data, "image/tiff", [("Accept-Ranges", "bytes")])

    def add_item(self, item: dict) -> None:
        self.items.append(item)


def _get_query(path: str) -> dict:
    params = {k: v[0] for k, v in parse_qs(urlparse(path).query).items()}
    query = {}
    if "bbox" in params:
        query["bbox"] = [float(v) for v in params["bbox"].split(",")]
    if "datetime" in params:
        query["datetime"] = params["datetime"]
    return query


def _intersects(box, epsg, bounds) -> bool:
    code, x0, y0, x1, y1 = box
    left, bottom, right, top = bounds
    return code == epsg and left < x1 and right > x0 and bottom < y1 and top > y0


def write_cog(path: Path, data: np.ndarray, epsg: int, transform, nodata: int = 0) -> None:
    """A single-band uint16 COG (as Sentinel-2 L2A assets are)."""
    profile = dict(
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint16",
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=nodata,
        blocksize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)


def add_stac_scenes(services: FakeServices, tmp_path: Path) -> None:
    """A fake STAC API with three scenes in UTM 14N (10 km squares of 10 m COG assets):
    A (cloud 5 %, baseline 05.09, offset still in the data), B (cloud 2 %, baseline 04.00,
    offset removed by the provider, nodata over its western half), C (cloud 50 %)."""
    from shapely import transform as shapely_transform
    from shapely.geometry import box, mapping

    to_lonlat = Transformer.from_crs(32614, 4326, always_xy=True)

    def scene(fake, name, left, top, cloud, baseline, applied, offset, nodata_west=False):
        px = 1000
        cols, rows = np.meshgrid(np.arange(px) + 0.5, np.arange(px) + 0.5)
        b04, b03, b02, _ = pattern(32614, left + cols * 10, top - rows * 10)
        assets = {}
        for key, band in (("red", b04), ("green", b03), ("blue", b02)):
            data = (band + offset).astype("uint16")
            if nodata_west:
                data[:, : px // 2] = 0
            path = tmp_path / f"{name}_{key}.tif"
            write_cog(path, data, 32614, Affine(10, 0, left, 0, -10, top))
            assets[key] = {"href": f"{fake.url}/files/{path.name}", "type": "image/tiff"}
        footprint = box(left, top - px * 10, left + px * 10, top).segmentize(500)
        footprint = shapely_transform(footprint, lambda xy: np.c_[to_lonlat.transform(*xy.T)])
        properties = {
            "datetime": "2023-07-01T17:00:00Z",
            "eo:cloud_cover": cloud,
            "s2:processing_baseline": baseline,
            "earthsearch:boa_offset_applied": applied,
        }
        fake.add_item(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": name,
                "collection": "sentinel-2-l2a",
                "geometry": mapping(footprint),
                "bbox": list(footprint.bounds),
                "properties": properties,
                "links": [],
                "assets": assets,
            }
        )

    fake = services
    scene(fake, "A", 580_000, 4_100_000, 5.0, "05.09", False, 1000)
    scene(fake, "B", 585_000, 4_095_000, 2.0, "04.00", True, 0, nodata_west=True)
    scene(fake, "C", 570_000, 4_100_000, 50.0, "05.09", False, 1000)
