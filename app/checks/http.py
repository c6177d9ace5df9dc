"""http: the URL answers with the expected status (and body), through the whole path the platform's requests take.

The request goes out once, with httpx; its trace events become the connect and tls handshake steps, so a
failure or a timeout is reported at the phase it happened in. `open_client` and `exchange` are shared with
the openai kind.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, FilePath, SecretStr, field_validator

from app import __version__
from app.checks import facts, proxy_env
from app.checks.base import CheckFailed, ConfiguredUrl, HeaderSecret, Probe, Stage, Target, elapsed_ms, find_cause
from app.checks.net import DROPPED, NO_ANSWER, connect_failure, default_port, resolve, resolver_failure
from app.checks.tls import HANDSHAKE_STEP, client_context, tls_failure, with_bundle_verdict
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

MAX_BODY = 1_000_000  # bytes read from a response; enough for any health page or API error
SNIPPET = 200  # characters of a body quoted in a cause
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - parsing the port is the validation
    except ValueError as error:
        raise ValueError(f"has an invalid port ({error})") from None
    return url


HttpUrl = Annotated[ConfiguredUrl, AfterValidator(_http_url)]
StatusCode = Annotated[int, Field(ge=100, le=599)]


class HttpTarget(Target):
    default_timeout: ClassVar[float] = 10.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx",)

    kind: Literal["http"]
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    expect_status: Annotated[
        list[StatusCode],
        BeforeValidator(
            lambda v: [v] if isinstance(v, int) else v, json_schema_input_type=StatusCode | list[StatusCode]
        ),
    ] = Field(default_factory=lambda: [200])  # one code or a list
    expect_body: str | None = None  # a regular expression searched for in the body (a plain word matches itself)
    headers: dict[str, HeaderSecret] = Field(
        default_factory=dict
    )  # values are secrets: never shown, scrubbed from every output
    ca_file: FilePath | None = None
    follow_redirects: bool = False

    @field_validator("expect_status")
    @classmethod
    def _some_status(cls, statuses: list[int]) -> list[int]:
        if not statuses:
            raise ValueError("must name at least one status code")
        return statuses

    @field_validator("expect_body")
    @classmethod
    def _valid_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return pattern

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return headers

    def secrets(self) -> list[str]:
        values = [v.get_secret_value() for v in self.headers.values()]
        # 'Bearer <token>': the token alone may be echoed back too
        credentials = [v.split(" ", 1)[1] for v in values if " " in v.strip()]
        return [*super().secrets(), *(s for s in values + credentials if s.strip())]

    def check(self, probe: Probe) -> None:
        url = urlsplit(self.url)
        if not proxy_env.ProxySettings.from_env().for_url(self.url):  # through a proxy, the proxy resolves the name
            resolve(probe, url.hostname or "", default_port(url.scheme, url.port))
        headers = {name: value.get_secret_value() for name, value in self.headers.items()}
        with open_client(probe, self.ca_file, follow_redirects=self.follow_redirects) as client:
            if self.follow_redirects:
                client.event_hooks["request"].append(_keep_headers_on_origin(self.url, list(headers)))
            try:
                answer = exchange(probe, client, self.method, self.url, headers=headers)
            except CheckFailed as failure:
                raise self._with_bundle_verdict(probe, failure) from failure.__cause__
        probe.facts.update(
            {
                "status": answer.status,
                facts.LATENCY_MS: answer.latency_ms,
                "final_url": answer.url,
                "redirects": answer.redirects,
                "server": clean_remote_text(answer.headers.get("server", "")),
                "content_type": clean_remote_text(answer.headers.get("content-type", "")),
                "body_bytes": len(answer.body),
            }
        )

        with probe.step("status", Stage.OPERATION):
            if answer.status not in self.expect_status:
                raise _unexpected_status(answer, self.expect_status)
            probe.note(f"{answer.status} {answer.reason}")

        if self.expect_body is not None:
            with probe.step("body", Stage.OPERATION):
                if not re.search(self.expect_body, answer.text):
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"the body does not match {self.expect_body!r}: {answer.snippet or '(empty)'}",
                        "the server answers, but not with the expected content: does the URL reach the right service "
                        "(not a default backend, a maintenance or a login page)?",
                    )
                probe.note(f"matches {self.expect_body!r}")

    def _with_bundle_verdict(self, probe: Probe, failure: CheckFailed) -> CheckFailed:
        """A certificate that did not verify: whether the CA bundle would have verified it (for a host reached
        directly; through a proxy's tunnel a direct handshake would prove nothing)."""
        import httpx

        error = failure.__cause__
        if (
            failure.stage != Stage.TLS
            or not isinstance(error, httpx.RequestError)
            or find_cause(error, ssl.SSLCertVerificationError) is None
        ):
            return failure
        url = error.request.url  # the hop that failed, a redirect's target included
        if proxy_env.ProxySettings.from_env().for_url(str(url)):
            return failure
        peer = (url.host, default_port(url.scheme, url.port))
        return with_bundle_verdict(failure, peer, url.host, self.ca_file, probe.remaining())


def _keep_headers_on_origin(url: str, names: list[str]) -> Callable[[httpx.Request], None]:
    """A request hook that drops the configured headers from every redirect hop that leaves url's origin.

    httpx strips only Authorization on such a hop; an api-key or X-Api-Key header would reach any host a
    Location names. Like httpx, a move of the same host from http to https keeps them.
    """
    import httpx

    home = _origin(httpx.URL(url))
    upgrade = ("https", home[1], 443) if home[::2] == ("http", 80) else home

    def hook(request: httpx.Request) -> None:
        if _origin(request.url) not in (home, upgrade):
            for name in names:
                request.headers.pop(name, None)

    return hook


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (httpx leaves a scheme's default port out)."""
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


@dataclass(frozen=True)
class Answer:
    """A response read in full (up to MAX_BODY), detached from the connection."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    url: str
    redirects: int
    latency_ms: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def snippet(self) -> str:
        return clean_remote_text(self.text, SNIPPET)


def open_client(probe: Probe, ca_file: Path | None, *, follow_redirects: bool = False) -> httpx.Client:
    """An httpx client that trusts the system store (or ca_file), goes through the proxy the environment names for
    each URL (proxy_env's NO_PROXY rules, not httpx's) and never retries."""
    import httpx

    if ca_file is None:
        context = client_context()
    else:
        with probe.step("load ca_file", Stage.TLS):
            context = client_context(ca_file)
    return httpx.Client(
        **proxy_env.httpx_args(context),
        timeout=httpx.Timeout(probe.remaining()),
        follow_redirects=follow_redirects,
        trust_env=False,
        headers={"User-Agent": f"airia-test-pod/{__version__}"},
    )


def exchange(
    probe: Probe,
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    form: dict[str, str] | None = None,
) -> Answer:
    """Send one request (a JSON or form body) and read its answer, recording connect, tls and http request steps."""
    import httpx

    request = client.build_request(method, url, headers=headers, json=json, data=form, timeout=probe.remaining())
    phases = _Phases(probe, request.url, proxy_env.record(probe, str(request.url)))
    request.extensions["trace"] = phases
    started = time.perf_counter()
    with phases:
        try:
            response = client.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY:
                        break
                    if probe.remaining(floor=0) == 0:  # a server that drips its body slower than the timeout
                        raise httpx.ReadTimeout("the body did not arrive in full before the timeout")
            finally:
                response.close()
        except httpx.HTTPError as error:
            raise phases.failure(error) from error
        final_url = str(response.url.copy_with(query=None))  # a query string may carry a token
        reason = clean_remote_text(response.reason_phrase, 100)
        probe.note(f"{method} {final_url}: {response.status_code} {reason}")
    return Answer(
        status=response.status_code,
        reason=reason,
        headers=response.headers,
        body=bytes(body[:MAX_BODY]),
        url=final_url,
        redirects=len(response.history),
        latency_ms=elapsed_ms(started),
    )


_TIMEOUTS = {
    Stage.CONNECT: ("no answer from {where} before the timeout", DROPPED),
    Stage.OPERATION: (
        "{where} accepted the request but did not answer before the timeout",
        NO_ANSWER[Stage.OPERATION],
    ),
}

# httpcore trace events that open a step; a step ends when the next one opens, or when the exchange ends
_STEPS = {
    "connection.connect_tcp.started": ("connect", Stage.CONNECT),
    "connection.start_tls.started": (HANDSHAKE_STEP, Stage.TLS),
    "proxy.start_tls.started": (HANDSHAKE_STEP, Stage.TLS),  # through a proxy's CONNECT tunnel
    "http11.send_request_headers.started": ("http request", Stage.OPERATION),
}


class _Phases(ExitStack):
    """httpx trace events as the probe's steps: the step in progress is where a failure or a timeout is reported."""

    def __init__(self, probe: Probe, url: httpx.URL, proxy: str) -> None:
        super().__init__()
        self.probe = probe
        self.in_step = False
        self.host, self.port = url.host, default_port(url.scheme, url.port)
        self.destination = f"{self.host}:{self.port}"
        self.proxy = proxy  # "" when direct
        self.tls_host = url.host  # the name TLS verifies: the destination's, also inside a proxy's tunnel

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event in _STEPS:
            self.close()
            self.enter_context(self.probe.step(*_STEPS[event]))
            self.in_step = True
        if event == "connection.connect_tcp.started":
            self.host, self.port = info["host"], info["port"]
            self.probe.note(f"{self.host}:{self.port}")
        elif event in ("connection.start_tls.complete", "proxy.start_tls.complete"):
            ssl_object = info["return_value"].get_extra_info("ssl_object")
            cipher = ssl_object.cipher()
            self.probe.note(f"{ssl_object.version()}, {cipher[0] if cipher else 'no cipher'}")
            self.probe.facts[facts.TLS_VERSION] = ssl_object.version()

    def failure(self, error: Exception) -> CheckFailed:
        """Classify an httpx error by the phase it interrupted and the error underneath it."""
        import httpx

        if not self.in_step:  # httpx gave up before connecting (e.g. a redirect to another scheme)
            self.enter_context(self.probe.step("http request", Stage.OPERATION))
            self.in_step = True
        stage, where = self.probe.stage, f"{self.host}:{self.port}"
        ssl_error = find_cause(error, ssl.SSLError)
        os_error = find_cause(error, OSError)
        if isinstance(error, httpx.TimeoutException) and stage == Stage.TLS:
            return tls_failure(TimeoutError(), self.host)
        if isinstance(error, httpx.TimeoutException):
            cause, remediation = _TIMEOUTS.get(stage, _TIMEOUTS[Stage.OPERATION])
            return CheckFailed(stage, cause.format(where=where), remediation)
        if isinstance(error, httpx.ProxyError):  # the proxy answered CONNECT with something other than 2xx
            return proxy_env.refusal(str(error), f"{self.host}:{self.port}", self.destination)
        underlying = ssl_error or os_error
        if stage == Stage.TLS and underlying is not None:
            return proxy_env.tls_through(tls_failure(underlying, self.tls_host), underlying, self.proxy)
        if isinstance(os_error, socket.gaierror):
            return resolver_failure(self.host, os_error)
        if isinstance(error, httpx.ConnectError) and where != self.destination:  # the connection was to the proxy
            failure = connect_failure(self.host, int(self.port), os_error)
            return CheckFailed(
                Stage.CONNECT,
                f"the proxy: {failure.cause}",
                "check HTTPS_PROXY / HTTP_PROXY (the chart's proxy values) and that the pod may reach the proxy",
            )
        if isinstance(error, httpx.ConnectError):
            return connect_failure(self.host, int(self.port), os_error)
        if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            return CheckFailed(
                stage,
                f"{where} broke off the HTTP exchange: {clean_remote_text(str(error))}",
                "the server closed or reset the connection, or answered something that is not HTTP: check the URL's "
                "port and scheme (http vs https), and the server's log",
            )
        if isinstance(error, httpx.TooManyRedirects):
            return CheckFailed(stage, "too many redirects", "the URL redirects in a loop: check the server's redirects")
        return CheckFailed(
            stage,
            f"the request failed: {type(error).__name__}: {clean_remote_text(str(error))}",
            "check the URL and the server's log",
        )


def _unexpected_status(answer: Answer, expected: list[int]) -> CheckFailed:
    status = answer.status
    cause = f"HTTP {status} {answer.reason}, expected {' or '.join(map(str, expected))}"
    if 300 <= status < 400:
        location = clean_remote_text(answer.headers.get("location", "(no Location header)"))
        return CheckFailed(
            Stage.OPERATION,
            f"{cause}; it redirects to {location}",
            "set follow_redirects: true, or point url at the final address (http vs https, a trailing slash)",
        )
    if answer.snippet:
        cause += f": {answer.snippet}"
    if status == 407:
        return CheckFailed(Stage.AUTH, cause, proxy_env.PROXY_AUTH)
    if status == 401:
        return CheckFailed(Stage.AUTH, cause, "the server wants credentials or rejects them: check the headers")
    if status == 403:
        return CheckFailed(
            Stage.PERMISSION,
            cause,
            "the credentials are accepted but not allowed here, or an IP allow-list or WAF rejects the pod",
        )
    if status == 404:
        return CheckFailed(Stage.OPERATION, cause, "nothing is served at this path: check the URL (and the ingress)")
    said = proxy_env.intermediary_error(answer.headers)
    if status >= 500 and said:
        return CheckFailed(
            Stage.OPERATION,
            f"{cause}; the proxy in between says: {said}",
            "a proxy or ingress on the way answered for the service it could not reach or did not trust (an "
            "inspecting egress proxy verifies the destination with its own trust store): its log says which",
        )
    if status >= 500:
        return CheckFailed(
            Stage.OPERATION,
            cause,
            "the server failed; 502, 503 and 504 from an ingress or proxy mean the service behind it is down "
            "or unreachable: check that service and its logs",
        )
    return CheckFailed(Stage.OPERATION, cause, "check the URL, the method and the headers against the API")
