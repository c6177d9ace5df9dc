"""Each kind checked against real servers on 127.0.0.1 (and a DNS server in a network namespace of its own)."""

from __future__ import annotations

import asyncio

from app.checks.base import Target
from app.results import Result
from app.runner import check_target


def run_check(target: Target) -> Result:
    """Check one target the way the runner does: in its own thread, under its timeout."""
    return asyncio.run(check_target(target))
