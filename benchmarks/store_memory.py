"""Peak memory of the maps made from an embedding store against the store arrays they read.

Builds (or reuses) a CONUS store with the demo model and `--context loc,env` on the default
paper grid, and a small store of the same pipeline for the fixed baseline (interpreter, torch,
the model, sklearn: the same command on 1/100 of the cells), then runs each map command
through the installed `prom3e-geo` and takes its peak RSS from the kernel (`os.wait4`). "Arrays
read" is the decoded size (shape x dtype) of the store variables the command reads; "net" is
the peak minus the command's baseline; the ratio is net / arrays read.

Run: `.venv/bin/python benchmarks/store_memory.py [--store DIR] [--work DIR] [--only ica]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

EXE = Path(sys.executable).with_name("prom3e-geo")
QUERY = Path(__file__).resolve().parents[1] / "examples" / "cardinal.jpg"
SMALL = ["--aoi", "-92,30,-80,38", "--crs", "EPSG:5070", "--resolution", "40000"]
PLANES = ["valid", "valid_loc", "valid_env", "aoi"]
# command arguments after the store, and the store variables each reads
COMMANDS: list[tuple[list[str], list[str]]] = [
    (["sdm", "--query", str(QUERY)], ["ctx_env", *PLANES]),
    (["sdm", "--query", str(QUERY), "--mode", "recon"], ["recon_image", *PLANES]),
    (["uncertainty", "--context", "loc,env"], ["sigma_l1", *PLANES]),
    (["uncertainty", "--context", "loc"], ["ctx_loc", *PLANES]),
    (
        ["uncertainty", "--context", "loc,env", "--layer", "expected_error"],
        ["ctx_loc", "ctx_env", *PLANES],
    ),
    (
        ["uncertainty", "--context", "loc,env", "--layer", "novelty"],
        ["ctx_loc", "ctx_env", *PLANES],
    ),
    (["uncertainty", "--context", "loc,env", "--layer", "trust"], ["ctx_loc", "ctx_env", *PLANES]),
    (["ica", "--token", "mu"], ["mu", *PLANES]),
    (["ica", "--token", "ctx_env"], ["ctx_env", *PLANES]),
]


def decoded_bytes(store: Path, names: list[str]) -> int:
    """Bytes of the named arrays once decoded (shape x itemsize)."""
    group = zarr.open_group(str(store), mode="r")
    total = 0
    for name in names:
        array = group[name]
        assert isinstance(array, zarr.Array)
        total += int(np.prod(array.shape)) * np.dtype(str(array.dtype)).itemsize
    return total


def peak_run(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one run of the installed command."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(EXE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.strip()}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def build(path: Path, grid: list[str]) -> None:
    if not path.exists():
        made = subprocess.run(
            [EXE, "embed", "--context", "loc,env", *grid, "--out", path],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise SystemExit(made.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="the CONUS store (built here if missing)")
    parser.add_argument("--work", type=Path, help="where stores and maps go (default: a temp)")
    parser.add_argument("--only", help="run the commands that start with this word (e.g. ica)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="store-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    store = args.store or work / "conus.zarr"
    small = work / "small.zarr"
    build(store, [])
    build(small, SMALL)
    print(
        "| command | store arrays read MB | peak RSS MB | baseline MB | net MB | net / read | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, (command, names) in enumerate(COMMANDS):
        if args.only and command[0] != args.only:
            continue
        out = ["--out", str(work / f"map{i}.tif"), "--overwrite"]
        base, _ = peak_run([*command, "--embeddings", str(small), *out])
        peak, wall = peak_run([*command, "--embeddings", str(store), *out])
        read = decoded_bytes(store, names) / 1e6
        net = peak - base
        print(
            f"| `{' '.join(command).replace(str(QUERY), 'cardinal.jpg')}` | {read:.0f} | "
            f"{peak:.0f} | {base:.0f} | {net:.0f} | {net / read:.2f} | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()
