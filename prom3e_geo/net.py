"""The one network policy: retries with backoff on 429 (Retry-After honoured), 5xx and dropped
connections, timeouts, and bounded connection pools.

Every download of the package goes through a `RetryPolicy`: HTTP sessions (`session`) get it as
urllib3's `Retry`, so a 429 waits what its Retry-After says and a 5xx is asked again after
`backoff * 2**k` seconds; work that a library does for us (a hub snapshot, a resumable file
download) runs under `RetryPolicy.call`, which waits the same `backoff * 2**k` between attempts.
What still fails after the retries is the caller's to report, as `DownloadError` (exit 1): a
failure of the world is never called bad input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import requests
    from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried again.

    `retries` further attempts after the first, waiting `backoff * 2**k` seconds before the
    k-th (at most `max_wait`; a 429's Retry-After instead, when the server sends one);
    `timeout` seconds for a connection or a read to make progress."""

    retries: int = 3
    backoff: float = 0.5
    timeout: float = 60.0
    max_wait: float = 120.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 is the first retry)."""
        return float(min(self.backoff * 2**attempt, self.max_wait))

    def urllib3_retry(self) -> Retry:
        """The policy as urllib3's `Retry` (for `requests` adapters and pystac-client)."""
        from urllib3.util.retry import Retry

        return Retry(
            total=self.retries,
            backoff_factor=self.backoff,
            backoff_max=self.max_wait,
            status_forcelist=sorted(RETRY_STATUSES),
            allowed_methods=None,  # POST searches too: every request here is idempotent
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer comes back; the caller names its status
        )

    def call(self, attempt: Callable[[], T], transient: Callable[[BaseException], bool]) -> T:
        """`attempt()`, tried again after the policy's waits while it raises an exception that
        `transient` accepts; the last exception propagates."""
        for k in range(self.retries + 1):
            try:
                return attempt()
            except Exception as exc:
                if k == self.retries or not transient(exc):
                    raise
                wait = self.wait(k)
                log.debug("retrying in %.1f s after %s", wait, type(exc).__name__)
                time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


def session(
    policy: RetryPolicy, connections: int, agent: str, host_url: str | None = None
) -> requests.Session:
    """An HTTP session holding at most `connections` keep-alive connections per host (callers
    beyond that wait for one: the pool blocks), retrying under `policy`.

    With `host_url`, for a session that asks one host many times, the environment's settings
    for that host (a proxy from `HTTP(S)_PROXY` unless `NO_PROXY` exempts it, credentials from
    `.netrc`, a CA bundle from `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE`) are read once, here,
    rather than before every request as requests does: a fifth of a tile request's CPU."""
    import requests
    from requests.adapters import HTTPAdapter
    from requests.utils import get_netrc_auth

    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=connections,
        max_retries=policy.urllib3_retry(),
        pool_block=True,
    )
    http = requests.Session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    http.headers["User-Agent"] = f"prom3e-geo ({agent})"
    if host_url is not None:
        found = http.merge_environment_settings(host_url, {}, None, None, None)
        http.proxies.update(found["proxies"])
        http.verify = found["verify"]
        http.auth = get_netrc_auth(host_url)
        http.trust_env = False
    return http


def dropped(exc: BaseException) -> bool:
    """A connection that broke or timed out mid-transfer (worth another attempt), as opposed to
    a name that does not resolve or a refused connection (no network: fail at once)."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        return not any(s in text for s in ("Connection refused", "NameResolution", "not known"))
    return isinstance(exc, (requests.Timeout, requests.exceptions.ChunkedEncodingError))


def reason(exc: BaseException) -> str:
    """A short, one-line reason for a failed request (never its full text, which can be long)."""
    text = " ".join(str(exc).split())
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "the server's name does not resolve"
    return f"{type(exc).__name__}: {text[:160]}"
