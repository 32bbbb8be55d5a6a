"""A stand-in on 127.0.0.1 for EOX's Sentinel-2 cloudless tile server.

It answers `GET /wmts/1.0.0/s2cloudless-YEAR_3857/default/g/{z}/{y}/{x}.jpg`, the layout of EOX's
WMTS REST tiles (TileMatrix/TileRow/TileCol: z, y, x), with 256 x 256 RGB tiles whose pixels are
known (`tile_pixels`): JPEG as EOX serves them, or PNG (`fmt="png"`, lossless) where a test needs
exact pixel values. Faults: `missing` tiles answer 404, `fail[(x, y)] = n` makes the next n
requests of a tile answer 503, `throttle = n` answers the next n requests with 429 and
`Retry-After: 1`. Every request is counted (`counts`, `bytes_sent`).
"""

from __future__ import annotations

import io
import re
from collections import Counter

import numpy as np
from fake_hub import _Server
from PIL import Image

TEMPLATE = "/wmts/1.0.0/s2cloudless-{year}_3857/default/g/{z}/{y}/{x}.jpg"


def tile_pixels(x: int, y: int, z: int) -> np.ndarray:
    """[256, 256, 3] uint8: red ramps along columns, green along rows, blue tells the tile."""
    cols, rows = np.meshgrid(np.arange(256), np.arange(256))
    blue = np.full((256, 256), (x * 37 + y * 101 + z * 7) % 256)
    return np.stack([cols, rows, blue], axis=-1).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if fmt == "png" else "JPEG", quality=90)
    return buffer.getvalue()


class FakeTiles(_Server):
    def __init__(self, fmt: str = "jpeg") -> None:
        super().__init__()
        self.fmt = fmt
        self.missing: set[tuple[int, int]] = set()
        self.fail: Counter = Counter()
        self.throttle = 0
        self.counts: Counter = Counter()
        self.bytes_sent = 0

    def template(self, year: int = 2020) -> str:
        return self.url + TEMPLATE.replace("{year}", str(year))

    def route(self, handler, method: str) -> None:
        path = self.log(handler, method)
        m = re.fullmatch(
            r"/wmts/1\.0\.0/s2cloudless-(\d+)_3857/default/g/(\d+)/(\d+)/(\d+)\.jpg", path
        )
        if not m:
            return self.reply(handler, 404, b"no such layer", method=method)
        z, y, x = (int(v) for v in m.groups()[1:])
        with self.lock:
            self.counts[(x, y)] += 1
            throttled = self.throttle > 0
            self.throttle -= throttled
            failing = self.fail[(x, y)] > 0
            self.fail[(x, y)] -= failing
        if throttled:
            return self.reply(handler, 429, b"slow down", {"Retry-After": "1"}, method)
        if failing:
            return self.reply(handler, 503, b"busy", method=method)
        if (x, y) in self.missing:
            return self.reply(handler, 404, b"tile out of range", method=method)
        body = encode(tile_pixels(x, y, z), self.fmt)
        with self.lock:
            self.bytes_sent += len(body)
        kind = "image/png" if self.fmt == "png" else "image/jpeg"
        return self.reply(handler, 200, body, {"Content-Type": kind}, method)
