"""The first real map, without imagery: `sdm --context loc,env` over the paper's CONUS grid with
the released tower sizes, timed as a user runs it (the installed command, a child process).

The parts are full size with seeded random weights, in the layouts MVRL publishes, saved to local
folders and named by a preset recipe (`--weights preset.yaml`), so no hub is needed: the 27.3 M
ProM3E (E 1024, depth 1, 8 heads), GeoCLIP's location encoder (sigma 1, 16, 256), SINR's
environment encoder (20 -> 512, depth 4), the open_clip ViT-B/16 photo tower (for the query) and a
20-band WorldClim-shaped raster (0.5 degree, z-scored). Two runs: the first computes the store
(every CONUS cell through GeoCLIP, SINR and ProM3E), the second maps from it.

    python benchmarks/first_map.py [--shape 250x500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def build_parts(folder: Path) -> Path:
    """Full-size parts (seeded random weights) and the preset recipe that names them."""
    from transformers import CLIPConfig, CLIPModel

    sys.path.insert(0, str(ROOT / "tests"))
    from open_clip_keys import hf_to_open_clip

    from prom3e_geo.encoders.environment import EnvironmentNet
    from prom3e_geo.encoders.location import LocationNet
    from prom3e_geo.model import ProM3E
    from prom3e_geo.worldclim import SCALING_TAG

    torch.manual_seed(0)
    prom3e = folder / "ProM3E"
    prom3e.mkdir()
    model = ProM3E()
    (prom3e / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, prom3e / "model.safetensors"
    )
    ecogeo = folder / "ecogeo"
    ecogeo.mkdir()
    (ecogeo / "config.json").write_text(
        json.dumps({"dim": 512, "encoded_size": 256, "input_size": 2, "sigma": [1, 16, 256]})
    )
    save_file(LocationNet().state_dict(), ecogeo / "model.safetensors")
    ecoclim = folder / "ecoclim"
    ecoclim.mkdir()
    (ecoclim / "config.json").write_text(
        json.dumps({"num_inputs": 20, "num_filts": 512, "depth": 4})
    )
    save_file(EnvironmentNet().state_dict(), ecoclim / "model.safetensors")
    clip = folder / "taxabind-vit-b-16"
    clip.mkdir()
    config = CLIPConfig(
        projection_dim=512,
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "patch_size": 16, "image_size": 224},
        text_config={"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                     "num_attention_heads": 8, "eos_token_id": 49407},
    )  # fmt: skip
    state = hf_to_open_clip(CLIPModel(config).state_dict())
    save_file({k: v.contiguous() for k, v in state.items()}, clip / "open_clip_model.safetensors")
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        "embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768,
                                         "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                     "layers": 12}}}))  # fmt: skip
    env = folder / "env20.tif"
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, (20, 360, 720)).astype(np.float32)
    with rasterio.open(env, "w", driver="GTiff", width=720, height=360, count=20, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(-180, 90, 0.5, 0.5)) as dst:  # fmt: skip
        dst.write(values)
        dst.update_tags(**{SCALING_TAG: "z-scored per band (benchmark raster)"})
    recipe = folder / "released-sizes.yaml"
    recipe.write_text(
        f"model: {prom3e}\nencoders:\n  loc: {ecogeo}\n  env: {ecoclim}\n  image: {clip}\n"
        f"env_raster: {env}\n"
    )
    return recipe


def run(args: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the child and its output."""
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return seconds, peak, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="250x500")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the parts and outputs here.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="first-map-"))
    folder.mkdir(parents=True, exist_ok=True)
    import os

    recipe = build_parts(folder)
    exe = str(Path(sys.executable).with_name("prom3e-geo"))
    env = {**os.environ, "PROM3E_GEO_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1"}
    command = [exe, "sdm", "--weights", str(recipe), "--context", "loc,env", "--shape", args.shape,
               "--query", "examples/cardinal.jpg"]  # fmt: skip
    cold = run([*command, "--out", str(folder / "map.tif"), "--overwrite"], env)
    warm = run([*command, "--out", str(folder / "again.tif"), "--overwrite"], env)
    with rasterio.open(folder / "map.tif") as ds:
        cells = int(np.isfinite(ds.read(1)).sum())
    print(
        f"sdm --context loc,env, {args.shape} grid ({cells:,} CONUS cells), {os.cpu_count()} CPUs"
    )
    print(f"  first map (store computed): {cold[0]:7.1f} s, peak RSS {cold[1]:,.0f} MiB, "
          f"{cells / cold[0]:,.0f} cells/s overall")  # fmt: skip
    print(f"  second map (from the store): {warm[0]:6.1f} s, peak RSS {warm[1]:,.0f} MiB")


if __name__ == "__main__":
    main()
