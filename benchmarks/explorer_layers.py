"""How fast the browser explorer makes what is not a photo's map: an uncertainty layer chosen on
the page and a recording's map.

Starts `prom3e-geo serve --embeddings STORE` on 127.0.0.1 (with `--audio-encoder FOLDER`, when
given, for recordings), then times over HTTP what the page asks: each uncertainty layer for the
store's whole context and for location alone (`POST /api/uncertainty`: the `uncertainty`
workflow run in the server, the COG written once), the same layer asked again (kept), and a
recording, a 5 s 440 Hz WAV as the page records it, mapped by the audio tower
(`POST /api/query`).

    python benchmarks/explorer_layers.py STORE [--audio-encoder FOLDER]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
import soundfile

EXE = Path(sys.executable).with_name("prom3e-geo")
LAYERS = ("sigma_l1", "expected_error", "novelty", "trust")


def timed(url: str, path: str, json: object = None, data: bytes | None = None) -> float:
    """Seconds for one POST to the explorer, answered 200."""
    t = time.perf_counter()
    requests.post(f"{url}{path}", json=json, data=data, timeout=600).raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--audio-encoder", default=None)
    args = parser.parse_args()
    serve = [EXE, "serve", "--embeddings", args.store, "--port", "0"]
    if args.audio_encoder:
        serve += ["--audio-encoder", args.audio_encoder]
    proc = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ")[1].split()[0]
        info = requests.get(f"{url}api/info", timeout=60).json()
        print(info["describe"])
        context = info["uncertainty"]["context"]
        for layer in LAYERS:
            for ctx in (context, ["loc"]):
                body = {"layer": layer, "context": ctx}
                first = timed(url, "api/uncertainty", body)
                again = timed(url, "api/uncertainty", body)
                print(f"{layer} of {'+'.join(ctx)}: {first:.2f} s made, {again:.3f} s asked again")
        if args.audio_encoder:
            t = np.arange(48_000 * 5) / 48_000
            wav = io.BytesIO()
            soundfile.write(wav, 0.5 * np.sin(2 * np.pi * 440 * t), 48_000, format="WAV")
            times = [
                timed(url, "api/query?filename=rec.wav", data=wav.getvalue()) for _ in range(5)
            ]
            print(f"recording (5 s WAV) to its map: median {np.median(times):.2f} s of 5")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
