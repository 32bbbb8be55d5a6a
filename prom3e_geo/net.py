"""The one network policy: retries with backoff on 429 (Retry-After honoured), 5xx and dropped
connections, timeouts, and bounded connection pools.

Every download of the package goes through a `RetryPolicy`: HTTP sessions (`session`) and
urllib3 pools (`pool`) get it as urllib3's `Retry`, so a 429 waits what its Retry-After says
and a 5xx is asked again after `backoff * 2**k` seconds; work that a library does for us (a hub
snapshot, a resumable file download) runs under `RetryPolicy.call`, which waits the same
`backoff * 2**k` between attempts.
What still fails after the retries is the caller's to report, as `DownloadError` (exit 1): a
failure of the world is never called bad input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from prom3e_geo.errors import InputError

if TYPE_CHECKING:
    import requests
    from urllib3 import PoolManager
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


def session(policy: RetryPolicy, connections: int, agent: str) -> requests.Session:
    """An HTTP session holding at most `connections` keep-alive connections per host (callers
    beyond that wait for one: the pool blocks), retrying under `policy`."""
    import requests
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=connections,
        max_retries=policy.urllib3_retry(),
        pool_block=True,
    )
    http = requests.Session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    http.headers["User-Agent"] = user_agent(agent)
    return http


def pool(policy: RetryPolicy, connections: int, agent: str, host_url: str) -> PoolManager:
    """A urllib3 pool for a source that asks one host many small questions (map tiles): at
    most `connections` keep-alive connections (callers beyond that wait for one), retrying
    under `policy`. A GET through requests costs about twice the CPU of one through urllib3,
    mostly in work that is the same for every request to one host, so that work is done here,
    once, as requests would do it for `host_url`: the proxy of `HTTP(S)_PROXY`/`ALL_PROXY`
    unless `NO_PROXY` exempts the host (with the proxy URL's credentials; a SOCKS proxy needs
    PySocks, as with requests), the host's `.netrc` credentials as Basic auth (urllib3 drops
    them on a redirect to another host), and the CA bundle of `REQUESTS_CA_BUNDLE` or
    `CURL_CA_BUNDLE`."""
    import requests
    import urllib3
    from requests.utils import get_auth_from_url, get_netrc_auth, select_proxy

    found = requests.Session().merge_environment_settings(host_url, {}, None, None, None)
    headers = {"User-Agent": user_agent(agent)}
    if credentials := get_netrc_auth(host_url):
        headers |= urllib3.make_headers(basic_auth=":".join(credentials))
    verify = found["verify"]
    options: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": connections,
        "block": True,
        "retries": policy.urllib3_retry(),
        "timeout": urllib3.Timeout(policy.timeout),
        "headers": headers,
    }
    if isinstance(verify, str):
        options["ca_certs"] = verify
    elif verify is False:
        options["cert_reqs"] = "CERT_NONE"
    proxy = select_proxy(host_url, found["proxies"])
    if not proxy:
        return urllib3.PoolManager(**options)
    user, password = get_auth_from_url(proxy)
    if proxy.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:
            raise InputError(f"the proxy {proxy} is SOCKS: install PySocks to use it") from None
        return SOCKSProxyManager(proxy, user or None, password or None, **options)
    if user:
        options["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}")
    return urllib3.ProxyManager(proxy, **options)


def user_agent(agent: str) -> str:
    return f"prom3e-geo ({agent})"


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
