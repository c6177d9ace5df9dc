"""proxy: the HTTP(S) egress proxy works the way the platform will use it.

It accepts connections and the credentials (407 named); a CONNECT tunnel to each destination opens, or fails with
the proxy's own answer; TLS through the tunnel is either the destination's own or replaced by the proxy's
inspection CA (named, with the CA the platform must then trust); and NO_PROXY (of this pod, which the chart gives
the platform's pods too) sends the cluster's own traffic around the proxy: the service domain, the API server,
the pod and service ranges.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import socket
import ssl
from typing import Annotated, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, FilePath, SecretStr, model_validator

from app.checks import facts, proxy_env
from app.checks.base import CheckFailed, ConfiguredUrl, Host, Probe, Stage, Target
from app.checks.net import NO_ANSWER, connect, resolve
from app.checks.tls import (
    CA_BUNDLE_VARIABLE,
    HANDSHAKE_STEP,
    ca_bundle,
    certificate_facts,
    client_context,
    tls_failure,
)
from app.sanitization import clean_remote_text

MAX_HEADER = 16_384  # bytes of a CONNECT answer read before giving up on it
UNREACHED = (502, 503, 504)  # what a proxy answers, inside an inspected tunnel, for a destination it did not reach


def _destination(value: str) -> str:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or "/" in value:
        raise ValueError("must be host:port (e.g. api.openai.com:443)")
    return value


def _proxy_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// proxy URL with a host")
    return url


Destination = Annotated[str, AfterValidator(_destination)]
Network = Annotated[str, AfterValidator(lambda v: str(ipaddress.ip_network(v, strict=False)))]


class ProxyTarget(Target):
    default_timeout: ClassVar[float] = 15.0

    kind: Literal["proxy"]
    url: Annotated[ConfiguredUrl, AfterValidator(_proxy_url)] | None = None  # default: HTTPS_PROXY of the environment
    username: str | None = None  # default: the user in HTTPS_PROXY
    password: SecretStr | None = None
    destinations: list[Destination] = Field(default_factory=list)  # host:port opened with CONNECT
    tls: bool = True  # shake hands with each destination through its tunnel
    ca_file: FilePath | None = None  # trust for the destinations, instead of the system store and CA bundle
    # what NO_PROXY must send around the proxy
    service_domain: Host | None = "cluster.local"
    api_server: Destination | None = None  # default: KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT
    pod_cidr: Network | None = None
    service_cidr: Network | None = None

    @model_validator(mode="after")
    def _password_with_user(self) -> ProxyTarget:
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        return self

    def check(self, probe: Probe) -> None:
        url, credentials = self._proxy()
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        probe.facts[facts.PROXY] = proxy_env.redacted(url)
        addresses = resolve(probe, host, port)
        connect(probe, host, port, addresses).close()
        for destination in self.destinations:
            self._tunnel(probe, (host, port, parts.scheme == "https"), credentials, destination)
        self._no_proxy(probe)

    def secrets(self) -> list[str]:
        """The password field, and the credentials of HTTPS_PROXY / HTTP_PROXY (also as a Basic token)."""
        settings = proxy_env.ProxySettings.from_env()
        found = [unquote(urlsplit(url).password or "") for url in (settings.https, settings.http)]
        tokens = [
            self._credentials(url).removeprefix("Basic ")
            for url in (self.url or settings.https or settings.http,)
            if url
        ]
        return [*super().secrets(), *(value for value in found + tokens if value)]

    def _proxy(self) -> tuple[str, str]:
        """The proxy URL (without credentials) and the Proxy-Authorization value ("" without credentials)."""
        settings = proxy_env.ProxySettings.from_env()
        raw = self.url or settings.https or settings.http
        if not raw:
            raise CheckFailed(
                Stage.CONNECT,
                "no proxy to check: url is not set and HTTPS_PROXY / HTTP_PROXY are not in the environment",
                "set the chart's proxy.httpsProxy (it gives the pods HTTPS_PROXY), or this target's url",
            )
        return proxy_env.redacted(raw), self._credentials(raw)

    def _credentials(self, raw: str) -> str:
        """The Proxy-Authorization value: the fields, else the user and password in the proxy URL; "" if none."""
        parts = urlsplit(raw)
        user = self.username or unquote(parts.username or "")
        password = self.password.get_secret_value() if self.password else unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""
        return f"Basic {token}" if token else ""

    # --- one tunnel --------------------------------------------------------------------------------------------

    def _tunnel(self, probe: Probe, proxy: tuple[str, int, bool], credentials: str, destination: str) -> None:
        with probe.step(f"CONNECT {destination}", Stage.CONNECT):
            sock = _open_tunnel(probe, proxy, credentials, destination)
            probe.note("tunnel open")
        with sock:
            if self.tls:
                self._handshake(probe, sock, proxy, credentials, destination)

    def _handshake(
        self, probe: Probe, sock: socket.socket, proxy: tuple[str, int, bool], credentials: str, destination: str
    ) -> None:
        name = destination.rpartition(":")[0].strip("[]")
        # With a CA bundle, first try without it: a chain that verifies only with the bundle is named as intercepted.
        bundled = self.ca_file is None and ca_bundle() is not None
        with probe.step(f"{HANDSHAKE_STEP} {destination}", Stage.TLS):
            try:
                der = _peer_certificate(probe, sock, name, client_context(self.ca_file, bundle=not bundled))
            except ssl.SSLCertVerificationError as error:
                if not bundled:
                    raise self._replaced(probe, proxy, credentials, destination, error) from None
                probe.note("does not verify with the system trust store alone")
            else:
                probe.note(f"issued by {certificate_facts(der)[facts.ISSUER]}")
                return
        with contextlib.ExitStack() as held:
            with probe.step(f"{HANDSHAKE_STEP} {destination} with the CA bundle", Stage.TLS):
                again = held.enter_context(_open_tunnel(probe, proxy, credentials, destination))
                try:
                    tls = held.enter_context(_verified(probe, again, name, client_context()))
                except ssl.SSLCertVerificationError as error:
                    raise self._replaced(probe, proxy, credentials, destination, error) from None
                issuer = str(certificate_facts(tls.getpeercert(binary_form=True) or b"")[facts.ISSUER])
                probe.facts[f"intercepted_{name}"] = issuer
                # a private CA of the destination looks the same from here: the note says both
                probe.note(
                    f"verifies only through the CA bundle: issued by {issuer}, the proxy's TLS inspection or a "
                    "private CA"
                )
            _relayed(probe, tls, proxy, destination)

    def _replaced(
        self,
        probe: Probe,
        proxy: tuple[str, int, bool],
        credentials: str,
        destination: str,
        error: ssl.SSLCertVerificationError,
    ) -> CheckFailed:
        """A certificate that does not verify through the proxy: name its issuer, the likely inspection CA."""
        name = destination.rpartition(":")[0].strip("[]")
        failure = tls_failure(error, name)
        try:
            with (
                _open_tunnel(probe, proxy, credentials, destination) as again,
                client_context(verify=False).wrap_socket(again, server_hostname=name) as tls,
            ):
                der = tls.getpeercert(binary_form=True) or b""
        except (OSError, CheckFailed):
            return failure
        issuer = str(certificate_facts(der)[facts.ISSUER])
        probe.facts[f"intercepted_{name}"] = issuer
        return CheckFailed(
            Stage.TLS,
            f"TLS to {destination} through the proxy does not verify ({failure.cause}): the certificate is issued "
            f"by {issuer}, likely the proxy's TLS inspection",
            f"if {issuer} is the proxy's inspection CA, the platform must trust its root: put it in the chart's "
            f"caBundle ({CA_BUNDLE_VARIABLE}); otherwise exempt {name} from inspection on the proxy",
        )

    # --- NO_PROXY ----------------------------------------------------------------------------------------------

    def _no_proxy(self, probe: Probe) -> None:
        settings = proxy_env.ProxySettings.from_env()
        if not settings.any:  # only this target knows the proxy: NO_PROXY means nothing to the pods yet
            probe.warn(
                Stage.OPERATION,
                "HTTPS_PROXY / HTTP_PROXY are not set in this pod: the other checks, like the platform's pods "
                "without them, go directly",
                "set the chart's proxy.httpsProxy, proxy.httpProxy and proxy.noProxy so every check goes the way "
                "the platform will",
            )
            return
        probe.facts["no_proxy"] = ", ".join(settings.no_proxy)
        with probe.step("NO_PROXY", Stage.OPERATION):
            missing = [label for label, covered in self._must_bypass(settings) if not covered]
            if missing:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"NO_PROXY does not exclude {', '.join(missing)}: the platform's in-cluster traffic would go "
                    "to the proxy",
                    "add them to the chart's proxy.noProxy (it sets NO_PROXY for the pods), e.g. "
                    ".cluster.local,.svc,<API server address>,<pod CIDR>,<service CIDR>",
                )
            probe.note("covers the service domain, the API server and the ranges given")

    def _must_bypass(self, settings: proxy_env.ProxySettings) -> list[tuple[str, bool]]:
        checks: list[tuple[str, bool]] = []
        if self.service_domain:
            sample = f"kubernetes.default.svc.{self.service_domain}"
            checks.append((f"the service domain {self.service_domain}", settings.excludes(sample, 443)))
        api_server = self.api_server or _in_cluster_api_server()
        if api_server:
            host, _, port = api_server.rpartition(":")
            checks.append((f"the API server {api_server}", settings.excludes(host.strip("[]"), int(port))))
        for label, cidr in (("pod range", self.pod_cidr), ("service range", self.service_cidr)):
            if cidr:
                network = ipaddress.ip_network(cidr)
                ends = (str(network[0]), str(network[-1]))
                checks.append((f"the {label} {cidr}", all(settings.excludes(address) for address in ends)))
        return checks


def _in_cluster_api_server() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_certificate(probe: Probe, sock: socket.socket, name: str, context: ssl.SSLContext) -> bytes:
    """The DER certificate of a verified TLS handshake over sock; a verification failure is raised as is."""
    with _verified(probe, sock, name, context) as tls:
        return tls.getpeercert(binary_form=True) or b""


def _verified(probe: Probe, sock: socket.socket, name: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A verified TLS connection over sock; a verification failure is raised as is, other failures classified."""
    sock.settimeout(probe.remaining())
    try:
        return context.wrap_socket(sock, server_hostname=name)
    except ssl.SSLCertVerificationError:
        raise
    except OSError as error:
        raise tls_failure(error, name) from None


def _relayed(probe: Probe, tls: ssl.SSLSocket, proxy: tuple[str, int, bool], destination: str) -> None:
    """A request through an inspected tunnel: an inspecting proxy opens the tunnel and shakes hands itself before it
    reaches the destination, so only its answer to a request shows whether it got there (or its error page)."""
    host, port, _ = proxy
    with probe.step(f"HEAD {destination} through the inspection", Stage.CONNECT):
        tls.settimeout(probe.remaining())
        try:
            tls.sendall(f"HEAD / HTTP/1.1\r\nHost: {destination}\r\nConnection: close\r\n\r\n".encode())
            version, answer, headers = _read_head(tls)
        except TimeoutError:
            raise CheckFailed(
                Stage.CONNECT,
                f"no answer from {destination} through the proxy {host}:{port}'s TLS inspection in time",
                NO_ANSWER[Stage.CONNECT],
            ) from None
        except OSError as error:
            raise CheckFailed(
                Stage.CONNECT,
                f"the proxy {host}:{port} broke off the inspected tunnel to {destination} ({type(error).__name__})",
                "the proxy's log says why",
            ) from None
        status = clean_remote_text(answer, 120)
        if not version.startswith("HTTP/") or not status[:3].isdigit():
            probe.note("answered, not over HTTP")
            return
        if int(status[:3]) in UNREACHED:
            said = proxy_env.intermediary_error(headers)
            raise CheckFailed(
                Stage.CONNECT,
                f"the proxy {host}:{port} inspects TLS to {destination} but did not reach it: it answered HEAD / "
                f"with {status}" + (f" ({said})" if said else ""),
                f"the proxy itself could not connect to {destination}, or did not trust its certificate (an "
                "inspecting proxy verifies the destination with its own trust store): its log says which",
            )
        probe.note(f"answered {status}")


def _open_tunnel(probe: Probe, proxy: tuple[str, int, bool], credentials: str, destination: str) -> socket.socket:
    """A socket through which bytes reach destination; the proxy's refusal is a CheckFailed with its answer."""
    host, port, over_tls = proxy
    try:
        sock = socket.create_connection((host, port), timeout=probe.remaining())
    except OSError as error:
        raise CheckFailed(
            Stage.CONNECT,
            f"cannot connect to the proxy {host}:{port}: {error.strerror or type(error).__name__}",
            "check the proxy URL (HTTPS_PROXY) and that the pod may reach the proxy",
        ) from None
    try:
        if over_tls:
            sock = client_context().wrap_socket(sock, server_hostname=host)
        request = f"CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n"
        if credentials:
            request += f"Proxy-Authorization: {credentials}\r\n"
        sock.sendall((request + "\r\n").encode())
        status = _read_status(sock, f"{host}:{port}")
    except TimeoutError:
        sock.close()
        raise CheckFailed(
            Stage.CONNECT,
            f"the proxy {host}:{port} did not answer CONNECT {destination} in time",
            NO_ANSWER[Stage.OPERATION],
        ) from None
    except OSError as error:
        sock.close()
        raise CheckFailed(
            Stage.CONNECT,
            f"the proxy {host}:{port} broke off CONNECT {destination} ({type(error).__name__})",
            "check that this is an HTTP proxy port (and http:// vs https:// in its URL), and the proxy's log",
        ) from None
    if not status.startswith("2"):
        sock.close()
        raise proxy_env.refusal(status, f"{host}:{port}", destination)
    return sock


def _read_status(sock: socket.socket, proxy: str) -> str:
    """The status of the proxy's answer ("200 Connection established"), read up to the end of its headers."""
    version, status, _ = _read_head(sock)
    if not version.startswith("HTTP/") or not status[:3].isdigit():
        first = f"{version} {status}".strip()
        raise CheckFailed(
            Stage.CONNECT,
            f"{proxy} does not answer like an HTTP proxy: {clean_remote_text(first, 80) or '(nothing)'}",
            "check the proxy's host and port (and http:// vs https:// in its URL)",
        )
    return clean_remote_text(status, 120)


def _read_head(sock: socket.socket) -> tuple[str, str, dict[str, str]]:
    """An HTTP answer's version, status ("200 Connection established") and headers (lower-case names), read up to
    the end of its headers (or MAX_HEADER bytes)."""
    answer = b""
    while b"\r\n\r\n" not in answer and len(answer) < MAX_HEADER:
        chunk = sock.recv(MAX_HEADER - len(answer))
        if not chunk:
            break
        answer += chunk
    first, *lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    version, _, status = first.partition(" ")
    headers = {}
    for line in lines:
        field, colon, value = line.partition(":")
        if colon:
            headers[field.strip().lower()] = value.strip()
    return version, status, headers
