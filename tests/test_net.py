"""The one network policy (`prom3e_geo.net`): its retries and waits, a failing server being a
failure of the world (exit 1, one line naming the URL) through the installed command, and the
fetchers behind real latency: bounded connections and 429 Retry-After honoured."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from fake_hub import _Server
from fake_latency import LatencyServer
from fake_services import FakeServices, add_stac_scenes
from fake_tiles import FakeTiles
from pyproj import Transformer

import prom3e_geo.net
from prom3e_geo.errors import InputError
from prom3e_geo.imagery.base import open_source
from prom3e_geo.net import RetryPolicy, session

EXE = Path(sys.executable).with_name("prom3e-geo")


class Failing(_Server):
    """Answers every request with `status`, counting them."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def route(self, handler, method: str) -> None:
        self.log(handler, method)
        self.reply(handler, self.status, b"oops", method=method)


def test_call_retries_what_is_transient_with_growing_waits(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(prom3e_geo.net.time, "sleep", waits.append)
    tries = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionResetError("dropped")
        return "done"

    policy = RetryPolicy(retries=3, backoff=0.5)
    assert policy.call(flaky, lambda e: isinstance(e, ConnectionResetError)) == "done"
    assert waits == [0.5, 1.0] and len(tries) == 3

    tries.clear()
    with pytest.raises(ValueError):  # not transient: raised at once, no wait
        policy.call(lambda: (tries.append(1), int("x"))[1], lambda e: False)
    assert len(tries) == 1 and waits == [0.5, 1.0]

    always = RetryPolicy(retries=2, backoff=1.0, max_wait=1.5)
    with pytest.raises(ConnectionResetError):
        always.call(lambda: (_ for _ in ()).throw(ConnectionResetError()), lambda e: True)
    assert waits[2:] == [1.0, 1.5]  # capped at max_wait


def test_session_retries_5xx_then_returns_the_last_answer():
    with Failing(503) as server:
        http = session(RetryPolicy(retries=2, backoff=0.01), 2, "test")
        response = http.get(server.url + "/x", timeout=5)
        http.close()
    assert response.status_code == 503 and len(server.requests) == 3  # 1 + 2 retries


class Proxy(_Server):
    """An HTTP proxy stand-in: records each request's target (absolute through a proxy) and its
    Authorization header, and answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def route(self, handler, method: str) -> None:
        with self.lock:
            self.seen.append((handler.path, handler.headers.get("Authorization")))
        self.reply(handler, 200, b"tile", method=method)


def test_a_pool_for_one_host_reads_the_environment_once_and_keeps_it(tmp_path, monkeypatch):
    """`pool(..., host_url)` (urllib3, for the tile source) does once what requests does before
    every request for that host: the proxy of HTTP_PROXY with the proxy URL's credentials (none
    when NO_PROXY exempts the host), the host's credentials in the .netrc file, the CA bundle of
    REQUESTS_CA_BUNDLE. `tiles.example` is a reserved name (RFC 2606) that never resolves: the
    requests made go to the proxy stand-in on 127.0.0.1, and the NO_PROXY pool is only
    inspected, never used."""
    import urllib3

    from prom3e_geo.net import pool

    netrc = tmp_path / "netrc"
    netrc.write_text("machine tiles.example login ann password secret\n")
    netrc.chmod(0o600)
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    with Proxy() as proxy:
        address = proxy.url.replace("http://", "http://bob:pw@")
        monkeypatch.setenv("HTTP_PROXY", address)
        http = pool(RetryPolicy(retries=0), 2, "test", "http://tiles.example/0/0/0.jpg")
        monkeypatch.delenv("HTTP_PROXY")  # read once: later changes do not matter
        answers = [http.request("GET", f"http://tiles.example/14/3/{y}.jpg") for y in (5, 6)]
        http.clear()
    assert isinstance(http, urllib3.ProxyManager) and [a.data for a in answers] == [b"tile"] * 2
    basic = "Basic " + base64.b64encode(b"ann:secret").decode()
    assert proxy.seen == [(f"http://tiles.example/14/3/{y}.jpg", basic) for y in (5, 6)]
    assert (
        http.proxy_headers["proxy-authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
    )
    assert http.connection_pool_kw["ca_certs"] == str(bundle)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "tiles.example")
    direct = pool(RetryPolicy(retries=0), 2, "test", "http://tiles.example/0/0/0.jpg")
    assert not isinstance(direct, urllib3.ProxyManager)  # exempt: asked directly
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY")
    try:
        from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks
    except ImportError:
        with pytest.raises(InputError, match="SOCKS: install PySocks"):
            pool(RetryPolicy(retries=0), 2, "test", "http://tiles.example/0/0/0.jpg")
    else:
        socks = pool(RetryPolicy(retries=0), 2, "test", "http://tiles.example/0/0/0.jpg")
        assert isinstance(socks, SOCKSProxyManager)
        assert socks.proxy_url == "socks5://127.0.0.1:1080"


def test_worldclim_server_error_after_the_retries_exits_1_naming_the_url(tmp_path):
    with Failing(500) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PROM3E_GEO_"))}
        env |= {
            "HOME": str(tmp_path / "home"),
            "PROM3E_GEO_CACHE": str(tmp_path / "cache"),
            "PROM3E_GEO_WORLDCLIM_URL": server.url,
            "HF_HUB_OFFLINE": "1",
        }
        r = subprocess.run(
            [str(EXE), "env", "prepare", "--out", str(tmp_path / "env.tif")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        served = len(server.requests)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    url = f"{server.url}/wc2.1_5m_elev.zip"
    assert url in r.stderr and "HTTP 500 after 3 retries" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and served == 4, r.stderr  # the first request and 3 retries
    assert not (tmp_path / "env.tif").exists()


def _tile_spec(server: LatencyServer, **options: object) -> str:
    query = "".join(f"&{k}={v}" for k, v in options.items())
    template = server.url + "/wmts/1.0.0/s2cloudless-{year}_3857/default/g/{z}/{y}/{x}.jpg"
    return f"s2cloudless?url={template}{query}"


def test_tile_fetching_holds_at_most_workers_connections_and_waits_out_429():
    tiles = FakeTiles()
    with LatencyServer(lambda h, m, b: tiles.route(h, m), latency=0.02) as server:
        source = open_source(_tile_spec(server, workers=4, retry_wait=0.01))
        rng = np.random.default_rng(0)
        lon, lat = rng.uniform(-120, -75, 40), rng.uniform(30, 48, 40)
        batch = source.fetch(lon, lat)
        source.close()
        assert batch.valid.all() and server.requests >= 40
        assert 2 <= server.connections_max <= 4  # overlapped, and never beyond the pool

        server.throttle, server.retry_after = 1, 1.0
        source = open_source(_tile_spec(server, workers=1, retry_wait=0.01))
        start = len(server.arrivals)
        batch = source.fetch(np.array([10.0]), np.array([45.0]))
        source.close()
    assert batch.valid.all()
    (first, throttled), (again, _) = server.arrivals[start : start + 2]
    assert throttled and again - first >= 1.0  # the Retry-After, not the 0.01 s backoff


def test_stac_reads_overlap_within_a_bound_on_connections(tmp_path):
    fake = FakeServices(files=tmp_path)
    with LatencyServer(fake.route, latency=0.02) as server:
        fake.url = server.url
        add_stac_scenes(fake, tmp_path)
        source = open_source(f"stac:{server.url}/stac?size=64&retry_wait=0&workers=3")
        x = np.repeat(np.arange(581_000.0, 589_000.0, 1_000.0), 2)[:12]
        y = np.tile([4_098_000.0, 4_094_000.0], 6)
        lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(x, y)
        batch = source.fetch(np.asarray(lon), np.asarray(lat))
        source.close()
    assert batch.valid.all()
    # three read threads (each may keep two connections) and three search threads at most
    assert 2 <= server.connections_max <= 3 * 2 + 3  # overlapped, within the bound


def test_http_errors_of_requests_are_not_swallowed():
    """A refused connection is not retried: no network fails at once."""
    http = session(RetryPolicy(retries=0, backoff=0.01), 1, "test")
    with pytest.raises(requests.ConnectionError):
        http.get("http://127.0.0.1:9/x", timeout=2)
    http.close()
    assert not prom3e_geo.net.dropped(requests.ConnectionError("Connection refused"))
