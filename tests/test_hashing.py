"""Content digests: remembered for unchanged files only, and always the file's true SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import rasterio

from prom3e_geo import hashing
from prom3e_geo.hashing import BackgroundDigest, KnownDigests, file_sha256
from tests.helpers import write_inat_csv

EXE = Path(sys.executable).with_name("prom3e-geo")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_settled_file_is_hashed_once_and_any_change_is_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "SETTLED_S", 0.0)
    data = tmp_path / "obs.csv"
    data.write_bytes(b"latitude,longitude,scientific_name\n38.5,-99.0,a\n")
    known = KnownDigests(tmp_path / "digests")
    assert file_sha256(data, known=known) == sha256(data)
    assert len(list((tmp_path / "digests").glob("*.json"))) == 1

    def no_reading(*args: object, **kwargs: object) -> str:
        raise AssertionError("read again")

    monkeypatch.setattr(hashing, "file_sha256", no_reading)
    assert known.sha256(data) == sha256(data)  # remembered: not read
    monkeypatch.undo()
    monkeypatch.setattr(hashing, "SETTLED_S", 0.0)

    size, mtime = data.stat().st_size, data.stat().st_mtime_ns
    data.write_bytes(b"latitude,longitude,scientific_name\n38.5,-99.0,b\n")  # same size
    os.utime(data, ns=(mtime, mtime))  # and the same modification time: the change time moves
    assert data.stat().st_size == size
    assert file_sha256(data, known=known) == sha256(data)
    data.unlink()
    data.write_bytes(b"latitude,longitude,scientific_name\n38.5,-99.0,c\n")  # a new file there
    assert file_sha256(data, known=known) == sha256(data)


def test_a_file_changed_just_before_hashing_is_not_remembered(tmp_path):
    data = tmp_path / "obs.csv"
    data.write_bytes(b"x" * 1000)  # written now: perhaps still being written
    known = KnownDigests(tmp_path / "digests")
    assert file_sha256(data, known=known) == sha256(data)
    assert not (tmp_path / "digests").exists()


def test_a_folder_that_cannot_hold_digests_only_means_hashing(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "SETTLED_S", 0.0)
    data = tmp_path / "obs.csv"
    data.write_bytes(b"y" * 1000)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert file_sha256(data, known=KnownDigests(blocker / "digests")) == sha256(data)
    (tmp_path / "digests").mkdir()
    entry = tmp_path / "digests" / "x.json"
    entry.write_text("{not json")  # a damaged entry of some other path: ignored
    assert file_sha256(data, known=KnownDigests(tmp_path / "digests")) == sha256(data)


def test_diversity_tags_the_true_digest_after_the_file_is_edited_in_place(tmp_path):
    """Through the CLI: the first run remembers the digest of a settled file; an edit that
    keeps the file's size and name is seen by the next run, whose tag is the new content's."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PROM3E_GEO_CACHE": str(cache)}
    rows = [(38.85, -99.75, "a"), (38.86, -99.74, "b"), (38.15, -98.15, "c")]
    csv = write_inat_csv(tmp_path / "obs.csv", rows)
    time.sleep(hashing.SETTLED_S + 0.2)

    def tagged_digest() -> str:
        out = tmp_path / "d.tif"
        args = ["diversity", "--observations", csv, "--out", out, "--overwrite"]
        done = subprocess.run([EXE, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with rasterio.open(out) as ds:
            return str(ds.tags()["observations_sha256"])

    assert tagged_digest() == sha256(csv)
    (entry,) = (cache / "digests").glob("*.json")
    assert json.loads(entry.read_text())["sha256"] == sha256(csv)
    edited = csv.read_text().replace("-99.75", "-99.76")
    assert len(edited) == len(csv.read_text())
    csv.write_text(edited)
    assert tagged_digest() == sha256(csv)
    assert tagged_digest() == sha256(csv)


@pytest.mark.parametrize("folder", [False, True])
def test_without_memory_folders_and_files_hash_as_before(tmp_path, folder):
    root = tmp_path / "weights"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a" * 3000)
    (root / "b.bin").write_bytes(b"b" * 10)
    if folder:
        expected = hashlib.sha256(b"a.bin" + b"a" * 3000 + b"b.bin" + b"b" * 10).hexdigest()
        assert file_sha256(root, block=1024, known=KnownDigests(tmp_path / "d")) == expected
    else:
        assert file_sha256(root / "a.bin", block=1024) == sha256(root / "a.bin")


def test_two_runs_remembering_one_file_at_once_agree(tmp_path):
    """Two `diversity` processes on one settled file, at the same time, into one cache: both
    tag its true digest, one entry is left and no temporary file."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PROM3E_GEO_CACHE": str(cache)}
    csv = write_inat_csv(tmp_path / "obs.csv", [(38.85, -99.75, "a"), (38.15, -98.15, "b")])
    time.sleep(hashing.SETTLED_S + 0.2)
    runs = [
        subprocess.Popen(
            [EXE, "diversity", "--observations", csv, "--out", tmp_path / f"d{k}.tif"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in (1, 2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()
    for k in (1, 2):
        with rasterio.open(tmp_path / f"d{k}.tif") as ds:
            assert ds.tags()["observations_sha256"] == sha256(csv)
    assert [p.suffix for p in (cache / "digests").iterdir()] == [".json"]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_hashes_are_the_files_sha256_across_block_edges(tmp_path, monkeypatch, size):
    monkeypatch.setattr(hashing, "HASH_BLOCK", 4096)
    data = tmp_path / "obs.csv"
    data.write_bytes(os.urandom(size))
    assert file_sha256(data, block=4096) == sha256(data)
    assert BackgroundDigest(data).result() == sha256(data)


def test_a_digest_asked_for_early_is_finished_by_the_asking_thread(tmp_path, monkeypatch):
    """The hashing thread (lowest priority, here held back) never finishes it: the thread
    that asks hashes the whole file itself, and the held-back thread then stops."""
    monkeypatch.setattr(hashing, "HASH_BLOCK", 1024)
    data = tmp_path / "obs.csv"
    data.write_bytes(os.urandom(50 * 1024 + 7))
    held, readers = threading.Event(), set()
    monkeypatch.setattr(hashing, "lowest_priority", held.wait)
    blocks = hashing._blocks

    def recorded(path: Path, offset: int, block: int) -> Iterator[memoryview]:
        readers.add(threading.current_thread().name)
        yield from blocks(path, offset, block)

    monkeypatch.setattr(hashing, "_blocks", recorded)
    begun = BackgroundDigest(data)
    assert begun.result() == sha256(data)
    assert readers == {threading.current_thread().name}
    held.set()
    begun._thread.join(timeout=5)
    assert not begun._thread.is_alive()
    assert begun.result() == sha256(data)


def test_the_asking_thread_never_waits_for_a_thread_stalled_in_the_middle(tmp_path, monkeypatch):
    """A nice-19 thread on a busy machine may stop anywhere: stalled after its third block,
    it holds nothing the asking thread needs, which finishes from the last state it left."""
    monkeypatch.setattr(hashing, "HASH_BLOCK", 1024)
    data = tmp_path / "obs.csv"
    data.write_bytes(os.urandom(10 * 1024 + 3))
    stalled, release = threading.Event(), threading.Event()
    blocks = hashing._blocks

    def stalling(path: Path, offset: int, block: int) -> Iterator[memoryview]:
        for k, chunk in enumerate(blocks(path, offset, block)):
            if threading.current_thread().name == "sha256" and k == 3:
                stalled.set()
                release.wait()
            yield chunk

    monkeypatch.setattr(hashing, "_blocks", stalling)
    begun = BackgroundDigest(data)
    assert stalled.wait(timeout=10)
    with ThreadPoolExecutor(1) as asker:  # a wait for the stalled thread fails, not hangs
        try:
            assert asker.submit(begun.result).result(timeout=10) == sha256(data)
        finally:
            release.set()
    begun._thread.join(timeout=5)
    assert not begun._thread.is_alive() and begun.result() == sha256(data)


def test_an_interrupted_ask_is_asked_again_to_the_true_digest(tmp_path, monkeypatch):
    """Ctrl-C while the asking thread hashes (a notebook's interrupt): asked again, the digest
    is the file's, and so is the one remembered for it."""
    monkeypatch.setattr(hashing, "HASH_BLOCK", 1024)
    monkeypatch.setattr(hashing, "SETTLED_S", 0.0)
    data = tmp_path / "obs.csv"
    data.write_bytes(os.urandom(8 * 1024))
    held = threading.Event()
    monkeypatch.setattr(hashing, "lowest_priority", held.wait)
    blocks, interrupts = hashing._blocks, [KeyboardInterrupt()]

    def interrupted(path: Path, offset: int, block: int) -> Iterator[memoryview]:
        for k, chunk in enumerate(blocks(path, offset, block)):
            if k == 2 and interrupts:
                raise interrupts.pop()
            yield chunk

    monkeypatch.setattr(hashing, "_blocks", interrupted)
    known = KnownDigests(tmp_path / "digests")
    begun = BackgroundDigest(data, known)
    with pytest.raises(KeyboardInterrupt):
        begun.result()
    assert begun.result() == sha256(data)
    held.set()
    begun._thread.join(timeout=5)
    monkeypatch.setattr(hashing, "_blocks", None)  # remembered: nothing is read
    assert BackgroundDigest(data, known).result() == sha256(data)


def test_a_digest_left_to_its_thread_is_hashed_there(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "HASH_BLOCK", 1024)
    data = tmp_path / "obs.csv"
    data.write_bytes(os.urandom(20 * 1024))
    begun = BackgroundDigest(data)
    begun._thread.join(timeout=10)
    monkeypatch.setattr(hashing, "_blocks", None)  # nothing is left to read
    assert begun.result() == sha256(data)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_is_hashed_in_whole_blocks(tmp_path):
    """A pipe (or /dev/stdin) reports size 0: it is read in whole blocks, not byte by byte."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    payload = os.urandom(3 << 20)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(payload)

    writer = threading.Thread(target=write)
    writer.start()
    began = time.perf_counter()
    assert file_sha256(fifo) == hashlib.sha256(payload).hexdigest()
    assert time.perf_counter() - began < 1.0  # byte by byte took 1.7 s
    writer.join()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads' own nice values")
def test_the_lowest_priority_is_the_calling_threads_only():
    seen: list[int] = []

    def lowered() -> None:
        hashing.lowest_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == [19]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_errors_of_a_begun_digest_are_raised_where_it_is_asked_for(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        BackgroundDigest(tmp_path / "missing.csv").result()
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 10)
    assert BackgroundDigest(folder).result() == hashlib.sha256(b"a.bin" + b"a" * 10).hexdigest()

    monkeypatch.setattr(hashing, "HASH_BLOCK", 1024)
    data = tmp_path / "obs.csv"
    data.write_bytes(b"z" * 5000)
    blocks = hashing._blocks

    def failing(path: Path, offset: int, block: int) -> Iterator[memoryview]:
        for k, chunk in enumerate(blocks(path, offset, block)):
            if k == 1:
                raise OSError(5, "Input/output error")
            yield chunk

    monkeypatch.setattr(hashing, "_blocks", failing)
    begun = BackgroundDigest(data)
    begun._thread.join(timeout=5)
    with pytest.raises(OSError, match="Input/output error"):
        begun.result()


def test_a_begun_digest_of_a_remembered_file_reads_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "SETTLED_S", 0.0)
    data = tmp_path / "obs.csv"
    data.write_bytes(b"w" * 5000)
    known = KnownDigests(tmp_path / "digests")
    assert BackgroundDigest(data, known).result() == sha256(data)  # remembered now
    monkeypatch.setattr(hashing, "_blocks", None)
    assert BackgroundDigest(data, known).result() == sha256(data)
