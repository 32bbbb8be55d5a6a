"""An S3 stand-in on 127.0.0.1: moto's server mode on a port the kernel picks.

`moto_s3()` starts `moto.server.ThreadedMotoServer` (the same HTTP API as S3: conditional puts
with `If-None-Match`, ranged GETs, listings) and yields the environment that points every S3
client at it through the standard `AWS_ENDPOINT_URL` and `AWS_*` credential variables, so the
code under test reads them exactly as it would on a real bucket or a MinIO server. Requests are
counted by method and by bytes served, for the bytes-read measurements.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer


class RequestLog:
    """WSGI middleware counting requests and response bytes (GET bodies) per method."""

    def __init__(self, app):
        self.app = app
        self.requests: Counter = Counter()
        self.bytes_out = 0
        self.gets: list[str] = []

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        self.requests[method] += 1
        body = self.app(environ, start_response)
        out = b"".join(body)
        if method == "GET":
            self.bytes_out += len(out)
            self.gets.append(path)
        return [out]

    def reset(self) -> None:
        self.requests.clear()
        self.bytes_out = 0
        self.gets.clear()


@contextmanager
def moto_s3(bucket: str = "maps") -> Iterator[tuple[dict[str, str], RequestLog]]:
    """A running S3 stand-in with `bucket` created: (environment, request log)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    wsgi = server._server  # werkzeug's server: wrap its app to count what is served
    counter = RequestLog(wsgi.app)
    wsgi.app = counter
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)  # fmt: skip
    try:
        yield env, counter
    finally:
        server.stop()
