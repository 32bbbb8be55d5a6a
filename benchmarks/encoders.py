"""Encoder throughput on this machine.

* Satellite tower: a full-size CLIP ViT-B/16 vision model with projection (random weights, the
  SatBind architecture), batch 64 of 256 x 256 reflectance patches: images/s end to end, and the
  share of the time spent in preprocessing (gain, resize to 224, normalisation).
* Photo preprocessing (JPEG decode, EXIF, resize, crop) per image, for the image tower.
* Location encoder with the real GeoCLIP weights: points/s at batch 4096.

    python benchmarks/encoders.py [--device cpu|cuda] [--batch 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import median_seconds, vit_b16_satellite_tower

from prom3e_geo.encoders.clip import SatelliteEncoder, load_photo, patches_to_pixels, photo_tensor
from prom3e_geo.encoders.location import LocationEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sat = SatelliteEncoder(vit_b16_satellite_tower(), args.device)
    device = sat.device
    print(
        f"device {device}, threads {torch.get_num_threads()}, ViT-B/16 "
        f"{sum(p.numel() for p in sat.module.parameters()) / 1e6:.1f} M parameters"
    )
    patches = np.random.default_rng(0).uniform(0, 0.4, (args.batch, 256, 256, 3)).astype("float32")

    def preprocessing():  # host: stack; device: gain, resize to 224, normalise
        return patches_to_pixels(sat.preprocess(patches).to(device), sat.image_size)

    pre = median_seconds(preprocessing, args.repeats, device)
    total = median_seconds(lambda: sat.encode(sat.preprocess(patches)), args.repeats, device)
    print(
        f"satellite tower, batch {args.batch}: {args.batch / total:.1f} images/s end to end; "
        f"preprocessing {100 * pre / total:.1f}% of the time ({1000 * pre / args.batch:.2f} ms/patch)"
    )

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        Image.fromarray(
            np.random.default_rng(1).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
        ).save(photo)
        per_photo = median_seconds(lambda: photo_tensor(load_photo(photo)), 5, torch.device("cpu"))
    print(
        f"photo preprocessing (1600 x 1200 JPEG -> 224 crop): {1000 * per_photo:.1f} ms/image "
        f"({1 / per_photo:.0f} images/s on one core)"
    )

    loc = LocationEncoder.load(device=args.device)
    rng = np.random.default_rng(2)
    points = np.c_[rng.uniform(25, 49, 4096), rng.uniform(-124, -67, 4096)]
    seconds = median_seconds(lambda: loc.embed(points, batch_size=4096), args.repeats + 1, device)
    print(f"location encoder (GeoCLIP weights), batch 4096: {4096 / seconds:,.0f} points/s")


if __name__ == "__main__":
    main()
