"""Socket steps that several kinds share: resolving a host, opening a TCP connection, the default port of a URL,
and what to do about a stage that got no answer in time."""

from __future__ import annotations

import errno
import socket

from app.checks import facts
from app.checks.base import CheckFailed, Probe, Stage

DROPPED = "packets are being dropped: check firewalls, security groups and NetworkPolicy egress to this port"
# what to do when a stage got no answer in time, whether the runner's deadline or a library's own timeout ended it
NO_ANSWER = {
    Stage.RESOLVE: "the DNS server did not answer in time: check the pod's resolver (CoreDNS) and its upstreams",
    Stage.CONNECT: DROPPED,
    Stage.TLS: "the port accepts connections but never completes a TLS handshake: is it really a TLS port?",
    Stage.AUTH: "the server accepted the connection but did not finish authenticating: check its load and logs",
    Stage.PERMISSION: "the server stalled while permissions were tested: check its load and locks",
    Stage.OPERATION: "the server accepted the request but did not answer in time: check its load and logs",
}

_CONNECT_REMEDIATION = {
    errno.ECONNREFUSED: "the host answered but nothing listens on port {port}: check the port and that it runs",
    errno.EHOSTUNREACH: "no route to {host}: check the pod's egress (NetworkPolicy, security groups, firewall)",
    errno.ENETUNREACH: "no route to {host}'s network: check the cluster's egress routing",
    errno.ECONNRESET: "the connection was reset: a firewall or proxy in between may be rejecting it",
}


_RESOLVER_ERRORS = {
    socket.EAI_NONAME: (
        "{host} does not resolve: no such name (NXDOMAIN)",
        "check the name for typos, and that the record exists in the zone the cluster DNS forwards to",
    ),
    socket.EAI_NODATA: (
        "{host} does not resolve: the name has no address records (no A or AAAA)",
        "add an A or AAAA record for {host}, or use the name that carries them",
    ),
    socket.EAI_AGAIN: (
        "{host} does not resolve: the DNS server failed to answer (SERVFAIL or no answer)",
        "check the pod's resolver (CoreDNS) and its upstream servers; "
        "a conditional forwarder for this zone may be missing or unreachable",
    ),
    socket.EAI_FAIL: (
        "{host} does not resolve: the DNS server refused or failed the query",
        "check the pod's resolver (CoreDNS) configuration and its upstream servers",
    ),
}


def resolver_failure(host: str, error: socket.gaierror) -> CheckFailed:
    """A resolver error by its EAI code: no such name, no address records, a DNS server that failed."""
    cause, remediation = _RESOLVER_ERRORS.get(
        error.errno or 0,
        ("{host} does not resolve ({reason})", "check the pod's resolver (/etc/resolv.conf, CoreDNS)"),
    )
    return CheckFailed(Stage.RESOLVE, cause.format(host=host, reason=error.strerror), remediation.format(host=host))


def resolve(probe: Probe, host: str, port: int) -> list[str]:
    """Every address `host` resolves to through the pod's own resolver, in the order it returned them."""
    with probe.step("resolve", Stage.RESOLVE):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise resolver_failure(host, error) from error
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        probe.note(", ".join(addresses))
    probe.facts[facts.ADDRESSES] = ", ".join(addresses)
    return addresses


def connect(probe: Probe, host: str, port: int, addresses: list[str]) -> socket.socket:
    """A connected socket to the first address that accepts; the caller closes it."""
    with probe.step("connect", Stage.CONNECT):
        last_error: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(probe.remaining())
            try:
                sock.connect((address, port))
            except OSError as error:
                sock.close()
                last_error = error
                continue
            probe.note(f"{address}:{port}")
            probe.facts[facts.CONNECTED_TO] = f"{address}:{port}"
            return sock
        raise connect_failure(host, port, last_error)


def connect_failure(host: str, port: int, error: OSError | None) -> CheckFailed:
    if isinstance(error, TimeoutError) or error is None:
        return CheckFailed(
            Stage.CONNECT,
            f"no answer from {host}:{port} before the timeout",
            DROPPED,
        )
    template = _CONNECT_REMEDIATION.get(
        error.errno or 0, "check that the service runs and that the pod may reach {host}:{port}"
    )
    reason = error.strerror or type(error).__name__
    return CheckFailed(
        Stage.CONNECT,
        f"cannot connect to {host}:{port}: {reason}",
        template.format(host=host, port=port),
    )


def default_port(scheme: str, port: int | None = None) -> int:
    """`port`, or the default port of an http(s) URL's scheme."""
    return port or (443 if scheme == "https" else 80)
