"""Shared by the pipeline tests: where the decision modules live (.github/scripts, not a package name, so it goes on
sys.path) and a recording HTTP receiver."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / ".github" / "scripts"
sys.path.insert(0, str(SCRIPTS))


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


Responder = Callable[[Request], tuple[int, dict[str, str], bytes]]


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers through `respond`."""

    url: str
    requests: list[Request] = field(default_factory=list)
    respond: Responder = lambda request: (204, {}, b"")


def json_response(status: int, data: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()
