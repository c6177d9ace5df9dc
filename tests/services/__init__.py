"""Real servers for the integration tests, run on 127.0.0.1 without Docker.

Each service module in this package provides:
- `install()`: fetch or build what the server needs, idempotently (called by `.ci/run` on a fresh machine);
- a session-scoped pytest fixture that starts the server once per test session (or uses one already
  running when its `TESTPOD_TEST_*` variables say so, e.g. from docker-compose.test.yml) and stops what it started.

Under CI=true a service that cannot start fails its tests; locally TESTPOD_SKIP_INTEGRATION=1 skips them.
"""

from __future__ import annotations

import os

import pytest

# module names under tests.services, in install order
SERVICES: list[str] = ["postgres", "cassandra", "azurite", "s3", "versitygw", "proxy", "squid", "registry"]


def unavailable(service: str, why: str) -> None:
    """Fail (in CI, or by default) or skip (only when the developer asked for it) a test whose server won't start."""
    if os.environ.get("TESTPOD_SKIP_INTEGRATION") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"{service} unavailable and TESTPOD_SKIP_INTEGRATION=1: {why}")
    pytest.fail(f"{service} could not be started: {why}", pytrace=False)
