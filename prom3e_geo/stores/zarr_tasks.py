"""A failed Zarr write ends only when every chunk write it started has ended.

zarr-python writes a store's chunks as concurrent tasks on its own event loop (a thread of its
own). When one of them fails (a full disk), the call raises at once while the others are still
queued or writing: a late chunk could land in a partial output that the caller has just removed,
and the tasks left behind are reported at exit as "Task was destroyed but it is pending!". After
a failure, `settled_on_failure` waits for them (each ends quickly: it writes, or fails the same
way) and only then lets the error go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from zarr.core import sync as zarr_sync

SETTLE_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)


async def _wait_for_other_tasks() -> None:
    current = asyncio.current_task()
    while pending := [task for task in asyncio.all_tasks() if task is not current]:
        await asyncio.wait(pending)


def settle_zarr_tasks(timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until zarr's event loop runs no task (at most `timeout_s`, then say so)."""
    loop = zarr_sync.loop[0]
    if loop is None or not loop.is_running():
        return
    future = asyncio.run_coroutine_threadsafe(_wait_for_other_tasks(), loop)
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        future.cancel()
        log.warning("zarr writes still running %.0f s after a failed write", timeout_s)


@contextmanager
def settled_on_failure() -> Iterator[None]:
    """Around Zarr writes: if the block raises, zarr's outstanding writes end before the error
    leaves the block."""
    try:
        yield
    except BaseException:
        settle_zarr_tasks()
        raise
