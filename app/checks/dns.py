"""dns: the name resolves, through the pod's own resolver, to every address it should and no other.

The pod's resolver (glibc's getaddrinfo: /etc/hosts, then the cluster DNS with its search domains) is what
the platform will use, so this check asks it rather than a DNS library that would bypass it.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import ClassVar, Literal

from pydantic import Field, IPvAnyAddress

from app.checks.base import CheckFailed, Host, Probe, Stage, Target
from app.checks.net import resolver_failure


class DnsTarget(Target):
    default_timeout: ClassVar[float] = 5.0

    kind: Literal["dns"]
    host: Host
    expected_addresses: list[IPvAnyAddress] = Field(default_factory=list)  # when given: exactly this set

    def check(self, probe: Probe) -> None:
        with probe.step("resolve", Stage.RESOLVE):
            try:
                infos = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise resolver_failure(self.host, error) from error
            ipv4 = list(dict.fromkeys(str(i[4][0]) for i in infos if i[0] == socket.AF_INET))
            ipv6 = list(dict.fromkeys(str(i[4][0]) for i in infos if i[0] == socket.AF_INET6))
            probe.note(", ".join(ipv4 + ipv6))
        probe.facts.update(ipv4=", ".join(ipv4), ipv6=", ".join(ipv6), address_count=len(ipv4) + len(ipv6))

        if self.expected_addresses:
            with probe.step("expected addresses", Stage.RESOLVE):
                answered = {ipaddress.ip_address(a.split("%")[0]) for a in ipv4 + ipv6}
                expected = set(self.expected_addresses)
                missing = sorted(map(str, expected - answered))
                unexpected = sorted(map(str, answered - expected))
                if missing or unexpected:
                    problems = [f"missing {', '.join(missing)}"] if missing else []
                    problems += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
                    raise CheckFailed(
                        Stage.RESOLVE,
                        f"{self.host} resolves to {', '.join(ipv4 + ipv6)}: {'; '.join(problems)}",
                        "update the DNS records (or expected_addresses, if the change is intended); "
                        "a stale /etc/hosts entry or a split-horizon zone can also answer differently in the cluster",
                    )
                probe.note("all expected, none other")
