"""The HTTP(S) proxy of the pod's environment, applied the same way by every kind that speaks HTTP.

HTTPS_PROXY / HTTP_PROXY / NO_PROXY (lower case wins, as in curl) are read here once per request decision, and
handed to each client explicitly (httpx, botocore, azure-core each read the environment by their own rules
otherwise, with different NO_PROXY matching). One matcher decides for all of them:

- `*` excludes every host;
- `example.com` and `.example.com` (or `*.example.com`) exclude that domain and every name under it;
- `10.0.0.0/8`, `fd00::/8` exclude addresses in the range, `10.1.2.3` that address (literal IPs only: the proxy,
  not the pod, would resolve a name);
- `name:port` excludes the name only on that port.

Kinds that cannot go through an HTTP proxy (postgres, cassandra, tcp) call `warn_if_proxied`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.checks import facts
from app.checks.base import CheckFailed, Probe, Stage
from app.sanitization import clean_remote_text

PROXY_AUTH = (
    "the proxy wants credentials or rejects them: set the proxy's user and password in the proxy URL of "
    "HTTPS_PROXY / HTTP_PROXY (from a Secret), or ask for the pod's source range to be allowed"
)
# a proxy's answer to CONNECT, by status: what the platform's operators should do
_REFUSALS = {
    407: (Stage.AUTH, PROXY_AUTH),
    401: (Stage.AUTH, PROXY_AUTH),  # tinyproxy's answer to wrong credentials
    403: (
        Stage.PERMISSION,
        "the proxy's policy forbids this destination: ask for {destination} to be allowed (an ACL or allow-list)",
    ),
    500: (Stage.CONNECT, "the proxy could not reach {destination}: check its DNS and egress, or the destination"),
    502: (Stage.CONNECT, "the proxy could not reach {destination}: check its DNS and egress, or the destination"),
    503: (Stage.CONNECT, "the proxy could not reach {destination}: check its DNS and egress, or the destination"),
    504: (Stage.CONNECT, "the proxy got no answer from {destination} in time: check its egress to that port"),
}
DIRECT = "direct"
BYPASSED = "direct (NO_PROXY)"


def _variable(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()


@dataclass(frozen=True)
class ProxySettings:
    """The proxy variables as read from the environment; an unset proxy is ""."""

    http: str = ""
    https: str = ""
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ
        entries = _variable(env, "no_proxy").replace(" ", ",").split(",")
        return cls(
            http=_proxy_url(_variable(env, "http_proxy")),
            https=_proxy_url(_variable(env, "https_proxy")),
            no_proxy=tuple(entry.strip().lower() for entry in entries if entry.strip()),
        )

    @property
    def any(self) -> bool:
        return bool(self.http or self.https)

    def for_url(self, url: str) -> str:
        """The proxy a request to `url` goes through, or "" when it goes directly."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not proxy or self.excludes(parts.hostname or "", port):
            return ""
        return proxy

    def excludes(self, host: str, port: int | None = None) -> bool:
        """Whether NO_PROXY sends connections to host (and port) around the proxy."""
        return any(_matches(entry, host.lower().strip("[]").rstrip("."), port) for entry in self.no_proxy)

    def route(self, url: str) -> str:
        """The `proxy` fact for a request to `url`: the proxy (without credentials), or how it went directly."""
        proxy = self.for_url(url)
        if proxy:
            return redacted(proxy)
        parts = urlsplit(url)
        return BYPASSED if (self.https if parts.scheme == "https" else self.http) else DIRECT


def _proxy_url(value: str) -> str:
    """A proxy variable as a URL; `proxy:3128` means http://proxy:3128, as curl and Go read it."""
    if not value:
        return ""
    return value if "://" in value else f"http://{value}"


def redacted(proxy: str) -> str:
    """The proxy URL without user name and password."""
    parts = urlsplit(proxy)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _matches(entry: str, host: str, port: int | None) -> bool:
    if entry == "*":
        return True
    entry_host, entry_port = _split_port(entry)
    if entry_port is not None and entry_port != port:
        return False
    entry_host = entry_host.removeprefix("*").rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if "/" in entry_host:
        try:
            network = ipaddress.ip_network(entry_host, strict=False)
        except ValueError:
            return False
        return address is not None and address.version == network.version and address in network
    if address is not None:
        try:
            return address == ipaddress.ip_address(entry_host)
        except ValueError:
            return False
    domain = entry_host.removeprefix(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or a bare host, IPv6 address or CIDR."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return entry, None


# --- what each client library needs -----------------------------------------------------------------------------


class _RoutedTransport:
    """An httpx transport that sends each request directly or through the proxy its URL calls for.

    httpx's own NO_PROXY handling knows neither CIDRs nor ports, so the decision is made here per request (a
    redirect to another host is routed again).
    """

    def __init__(self, settings: ProxySettings, verify: Any) -> None:
        import httpx

        self._settings = settings
        self._verify = verify
        self._transports: dict[str, httpx.HTTPTransport] = {}

    def _for(self, url: str) -> Any:
        import httpx

        proxy = self._settings.for_url(url)
        if proxy not in self._transports:
            self._transports[proxy] = httpx.HTTPTransport(verify=self._verify, proxy=proxy or None, retries=0)
        return self._transports[proxy]

    def handle_request(self, request: Any) -> Any:
        return self._for(str(request.url)).handle_request(request)

    def __enter__(self) -> _RoutedTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()


def httpx_args(verify: Any, settings: ProxySettings | None = None) -> dict[str, Any]:
    """Keyword arguments for httpx.Client: the proxy of each request's URL, with `verify` (an SSLContext).

    Use as `httpx.Client(**httpx_args(context), trust_env=False, ...)`.
    """
    return {"transport": _RoutedTransport(settings or ProxySettings.from_env(), verify)}


def botocore_proxies(endpoint_url: str, settings: ProxySettings | None = None) -> dict[str, str]:
    """botocore's Config(proxies=...) for a client of `endpoint_url`; {} means directly (and stops botocore from
    reading the environment itself)."""
    current = settings or ProxySettings.from_env()
    proxy = current.for_url(endpoint_url)
    return {"http": proxy, "https": proxy} if proxy else {}


def azure_args(endpoint_url: str, settings: ProxySettings | None = None) -> dict[str, Any]:
    """Keyword arguments for an azure-core client of `endpoint_url`: its proxy, and no reading of the environment."""
    proxy = (settings or ProxySettings.from_env()).for_url(endpoint_url)
    return {"use_env_settings": False, **({"proxies": {"http": proxy, "https": proxy}} if proxy else {})}


def record(probe: Probe, url: str, settings: ProxySettings | None = None) -> str:
    """Set the `proxy` fact for requests to `url`; the proxy used ("" when direct)."""
    current = settings or ProxySettings.from_env()
    probe.facts[facts.PROXY] = current.route(url)
    return current.for_url(url)


def refusal(answer: str, proxy: str, destination: str) -> CheckFailed:
    """A proxy's non-2xx answer to CONNECT ("407 Proxy Authentication Required") as a failure, by its status code."""
    code = answer.strip().partition(" ")[0]
    stage, remediation = _REFUSALS.get(
        int(code) if code.isdigit() else 0,
        (Stage.CONNECT, "the proxy refused the tunnel to {destination}: its log says why"),
    )
    return CheckFailed(
        stage,
        f"the proxy {proxy} refused CONNECT to {destination}: {clean_remote_text(answer, 120)}",
        remediation.format(destination=destination),
    )


def intermediary_error(headers: Mapping[str, str]) -> str:
    """What a proxy says about its own error answer: RFC 9209's Proxy-Status, or squid's X-Squid-Error; "" if none."""
    said = headers.get("proxy-status") or headers.get("x-squid-error") or ""
    return clean_remote_text(said, 120)


def tls_through(failure: CheckFailed, error: BaseException | None, proxy: str) -> CheckFailed:
    """A certificate that did not verify through a proxy's tunnel: the proxy's TLS inspection is the first suspect,
    and no handshake from the pod can tell (every path out goes through the proxy). Other failures stay as they are."""
    import ssl

    if not proxy or not isinstance(error, ssl.SSLCertVerificationError):
        return failure
    return CheckFailed(
        failure.stage,
        f"{failure.cause} (through the proxy {redacted(proxy)})",
        "if the proxy inspects TLS, the platform must trust its CA: put it in the chart's caBundle "
        f"(TESTPOD_CA_BUNDLE); a proxy target names the issuer. Otherwise: {failure.remediation}",
    )


def warn_if_proxied(probe: Probe, host: str, port: int, settings: ProxySettings | None = None) -> None:
    """For kinds that connect directly: a warning when a proxy is set and NO_PROXY does not exclude host."""
    current = settings or ProxySettings.from_env()
    if not current.any:
        probe.facts[facts.PROXY] = DIRECT
        return
    probe.facts[facts.PROXY] = BYPASSED if current.excludes(host, port) else DIRECT
    if not current.excludes(host, port):
        probe.warn(
            Stage.CONNECT,
            f"a proxy is set (HTTPS_PROXY/HTTP_PROXY) but NO_PROXY does not exclude {host}:{port}, which this "
            "protocol reaches directly",
            f"add {host} to NO_PROXY for the platform's pods (its HTTP clients would otherwise send it to the proxy), "
            "and allow direct egress to it",
        )
