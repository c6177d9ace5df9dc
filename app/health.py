"""The pod's own health: liveness, readiness and start-up states, and resource figures.

None of it touches a target: a broken customer database must never pull the pod that reports it out of
its Service. Readiness means the app has loaded and validated its config; a broken targets file is an
operator error, so the pod stays live (its logs and dashboard say what is wrong) but never becomes ready,
which makes `helm install --wait` fail instead of reporting on a config nobody meant.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from app import __version__


@dataclass
class PodHealth:
    config_error: str | None = None
    started: bool = False
    started_monotonic: float = field(default_factory=time.monotonic)
    _process: psutil.Process = field(default_factory=psutil.Process)

    def ready(self) -> tuple[bool, dict[str, str]]:
        if not self.started:
            return False, {"status": "starting"}
        if self.config_error is not None:
            # the error itself names hosts and fields: it is shown behind the login, not to anonymous probes
            return False, {"status": "not_ready", "reason": "the targets file is invalid; see the pod's log"}
        return True, {"status": "ready"}

    def details(self) -> dict[str, Any]:
        """Resource figures for the authenticated detailed view. Cheap: no sampling interval, no target."""
        process = self._process
        with process.oneshot():
            memory = process.memory_info()
            figures: dict[str, Any] = {
                "rss_bytes": memory.rss,
                "vms_bytes": memory.vms,
                "cpu_percent": process.cpu_percent(interval=None),
                "threads": process.num_threads(),
                "open_files": process.num_fds(),
            }
        system = psutil.virtual_memory()
        return {
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 1),
            "pid": os.getpid(),
            "config_valid": self.config_error is None,
            "config_error": self.config_error,
            "process": figures,
            "system": {
                "cpu_count": psutil.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "memory_total_bytes": system.total,
                "memory_available_bytes": system.available,
            },
            "disk": {path: _disk(path) for path in dict.fromkeys(["/", tempfile.gettempdir()])},
        }


def _disk(path: str) -> dict[str, Any]:
    usage = psutil.disk_usage(path)
    return {"total_bytes": usage.total, "free_bytes": usage.free, "used_percent": usage.percent}
