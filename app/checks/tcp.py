"""tcp: the host resolves and something accepts connections on the port."""

from __future__ import annotations

from typing import ClassVar, Literal

from app.checks import proxy_env
from app.checks.base import Host, Port, Probe, Target
from app.checks.net import connect, resolve


class TcpTarget(Target):
    default_timeout: ClassVar[float] = 5.0

    kind: Literal["tcp"]
    host: Host
    port: Port

    def check(self, probe: Probe) -> None:
        proxy_env.warn_if_proxied(probe, self.host, self.port)
        addresses = resolve(probe, self.host, self.port)
        connect(probe, self.host, self.port, addresses).close()
