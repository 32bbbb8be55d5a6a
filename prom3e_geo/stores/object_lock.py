"""A build lock on object storage: one object created with a conditional put, renewed while held.

Object stores have neither `flock` nor rename. The lock is the object `.NAME.lock` beside the
store, created with `If-None-Match: *` (s3fs's `mode="create"`; S3, MinIO and moto refuse the
second creator with 412, which s3fs raises as `FileExistsError`). Its body names the holder (host,
process id) and a lease expiry that a thread renews while the lock is held. A waiter takes the lock
over when the lease has run out (the holder died on another machine) or when the holder is a
process of this host that no longer runs (a `kill -9` here: resume is immediate).

The lock only prevents duplicate work. Correctness does not rest on it: chunk writes are
idempotent (a chunk computed twice writes the same bytes), a chunk's marker object is written
only after its data objects, and a store whose manifest differs is refused; so two builders that
both believe they hold the lock (a takeover racing a late renewal) waste work, never mix runs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prom3e_geo.partials import is_running
from prom3e_geo.stores.location import Location

LEASE_S = 120.0
POLL_S = 1.0

log = logging.getLogger(__name__)


@contextmanager
def object_lock(
    location: Location, lease_s: float = LEASE_S, doing: str = "building"
) -> Iterator[None]:
    """Hold the lock of the store at `location` (an object-storage URL) for the block, `doing`
    naming the work in the waiting message; the lock object is deleted when the block ends,
    however it ends."""
    fs = location.filesystem()
    key = location.sibling(f".{location.name}.lock").path
    waited = False
    while not _try_create(fs, key, lease_s):
        if _stale(fs, key):
            log.info("taking over the lock of %s (its holder is gone)", location)
            fs.rm(key)
            continue
        if not waited:
            log.info("waiting for another run that is %s %s", doing, location)
            waited = True
        time.sleep(POLL_S)
    stop = threading.Event()
    renew = threading.Thread(
        target=_renew, args=(fs, key, lease_s, stop), daemon=True, name="prom3e-lock-lease"
    )
    renew.start()
    try:
        yield
    finally:
        stop.set()
        renew.join()
        fs.rm(key)


def _body(lease_s: float) -> bytes:
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "expires": time.time() + lease_s}
    return json.dumps(holder).encode()


def _try_create(fs: object, key: str, lease_s: float) -> bool:
    try:
        fs.pipe_file(key, _body(lease_s), mode="create")  # type: ignore[attr-defined]  # fsspec is untyped
    except FileExistsError:
        return False
    return True


def _stale(fs: object, key: str) -> bool:
    """The lock's lease ran out, or its holder is a process of this host that no longer runs."""
    try:
        holder = json.loads(fs.cat_file(key))  # type: ignore[attr-defined]  # fsspec is untyped
    except FileNotFoundError:
        return False  # released meanwhile: the next create succeeds
    except ValueError:
        return True  # not a lock body prom3e-geo wrote
    if float(holder.get("expires", 0)) < time.time():
        return True
    return holder.get("host") == socket.gethostname() and not is_running(int(holder["pid"]))


def _renew(fs: object, key: str, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(lease_s / 4):
        try:
            fs.pipe_file(key, _body(lease_s))  # type: ignore[attr-defined]  # fsspec is untyped
        except OSError as exc:  # a renewal missed: the next one may succeed
            log.warning("could not renew the build lock %s: %s", key, exc)
