"""A stand-in on 127.0.0.1 with the latency and bandwidth of a real service, around any route.

`LatencyServer(route, latency=0.05, bandwidth=...)` answers every request after `latency`
seconds and writes each response body at no more than `bandwidth` bytes/s per connection, as a
remote tile server or object store does from across a continent. `route(handler, method, body)`
answers the request (the routes of `FakeTiles` and `FakeServices` fit: they write through
`handler.wfile`). HTTP/1.1 keep-alive; the open connections are counted (`connections_max`: the
most at once), and so are the requests and bytes served (`stats`; `GET /_stats` and
`GET /_reset` answer them at once, for a server run in another process). `throttle = n` answers the next n
requests with 429 and `Retry-After: retry_after`; `arrivals` holds (time, answered with 429) of
every request, so a test can see that the wait was honoured.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[BaseHTTPRequestHandler, str, bytes], None]


class _Throttled(io.RawIOBase):
    """A socket writer that sends at most `rate` bytes/s (in 16 KiB slices)."""

    def __init__(self, raw: Any, rate: float, server: LatencyServer) -> None:
        self.raw, self.rate, self.server = raw, rate, server

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        for start in range(0, len(view), 1 << 14):
            piece = view[start : start + (1 << 14)]
            began = time.perf_counter()
            self.raw.write(piece)
            spare = len(piece) / self.rate - (time.perf_counter() - began)
            if spare > 0:
                time.sleep(spare)
        with self.server.lock:
            self.server.bytes_sent += len(view)
        return len(view)

    def flush(self) -> None:
        self.raw.flush()


class LatencyServer:
    def __init__(
        self,
        route: Route,
        latency: float = 0.05,
        bandwidth: float = 4e6,
        retry_after: float = 1.0,
    ) -> None:
        self.route, self.latency, self.bandwidth = route, latency, bandwidth
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.connections = 0
        self.connections_max = 0
        self.requests = 0
        self.bytes_sent = 0
        self.throttle = 0
        self.arrivals: list[tuple[float, bool]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as web servers set on keep-alive connections (nginx's `tcp_nodelay`
            # default): without it, a body's last short segment waits for the client's delayed
            # ACK, adding ~40 ms to every response that is not the stand-in's own latency
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.wfile = _Throttled(self.wfile, owner.bandwidth, owner)  # type: ignore[assignment]  # a writer like the socket's
                with owner.lock:
                    owner.connections += 1
                    owner.connections_max = max(owner.connections_max, owner.connections)

            def finish(self) -> None:
                with owner.lock:
                    owner.connections -= 1
                super().finish()

            def handle_one(self, method: str) -> None:
                if self.path in ("/_stats", "/_reset"):  # for a server in another process
                    if self.path == "/_reset":
                        owner.reset_counts()
                    data = json.dumps(owner.stats()).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                body = b""
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.monotonic()
                time.sleep(owner.latency)
                with owner.lock:
                    owner.requests += 1
                    throttled = owner.throttle > 0
                    owner.throttle -= throttled
                    owner.arrivals.append((arrived, throttled))
                if throttled:
                    self.send_response(429)
                    self.send_header("Retry-After", f"{owner.retry_after:g}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                owner.route(self, method, body)

            def do_GET(self) -> None:
                self.handle_one("GET")

            def do_HEAD(self) -> None:
                self.handle_one("HEAD")

            def do_POST(self) -> None:
                self.handle_one("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LatencyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "bytes": self.bytes_sent,
                "connections_max": self.connections_max,
                "cpu_ms": int(time.process_time() * 1000),  # the serving process's, all threads
            }

    def reset_counts(self) -> None:
        with self.lock:
            self.connections_max = self.connections
            self.requests = self.bytes_sent = 0
