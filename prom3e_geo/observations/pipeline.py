"""A thread that runs a generator one or more items ahead of its consumer."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")


class _Done:
    """The end-of-stream marker put on the queue by the producer."""


_DONE = _Done()


def read_ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Iterate over `items` produced on a thread of their own, `depth` items ahead.

    The producer runs the whole generator, its clean-up included, so a file it reads is closed
    by the thread reading it. An exception in the producer is raised in the consumer; a consumer
    that stops early (an error, a break) stops the producer and waits for it."""
    slots: queue.Queue[tuple[T | _Done, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put((_DONE, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                close()
        slots.put((_DONE, None))

    thread = threading.Thread(target=produce, name="observations-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if isinstance(item, _Done):
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # free a producer blocked on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()
