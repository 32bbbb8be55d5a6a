"""Object-storage failures through the installed CLI: missing credentials are the user's to fix
(exit 2), an unreachable service is a failure of the world (exit 1); each in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("prom3e-geo")


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO"))}
    clean |= {"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true", **env}
    return subprocess.run(
        [str(EXE), "ica", "--embeddings", "s3://maps/conus.zarr", "--out", str(tmp_path / "i.tif")],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )


def test_missing_credentials_exit_2_in_one_line(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3://maps/conus.zarr" in lines[0]
    assert "credentials" in lines[0].lower() and "Traceback" not in done.stderr
    assert not (tmp_path / "i.tif").exists()


def test_an_unreachable_endpoint_exits_1_in_one_line(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run(
        tmp_path,
        AWS_ACCESS_KEY_ID="key",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_MAX_ATTEMPTS="1",
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the storage service" in lines[0]
    assert "s3://maps/conus.zarr" in lines[0]
